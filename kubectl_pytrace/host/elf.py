"""A small ELF64 reader: function symbols, load segments and USDT (stapsdt) notes.

Enough to attach uprobes (symbol -> file offset), to attach USDT probes (note -> file offset and
semaphore offset) and to symbolize user addresses, without loading libbcc (and LLVM with it) into
the tracer process.

Symbols come from the file's .symtab/.dynsym and, as BCC (so bpftrace) reads them, from its
separate debug file when one is installed (Debian's libc6-dbg: static functions of libc):

    /usr/lib/debug/.build-id/93/ac61ec5a8e....debug     by the build id note (NT_GNU_BUILD_ID)
    DIR/NAME, DIR/.debug/NAME, /usr/lib/debug/DIR/NAME  by .gnu_debuglink (NAME + CRC32 of the file)
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple
from kubectl_pytrace.errors import LookupFailed

SHT_SYMTAB, SHT_NOTE, SHT_DYNAMIC, SHT_DYNSYM = 2, 7, 6, 11
DT_NEEDED = 1
NT_GNU_BUILD_ID = 3
DEBUG_DIR = "/usr/lib/debug"
PT_LOAD = 1
STT_FUNC, STT_GNU_IFUNC = 2, 10
SHN_UNDEF = 0
NT_STAPSDT = 3


class ELFError(LookupFailed):
    pass


@dataclass(frozen=True)
class Segment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    flags: int


@dataclass(frozen=True)
class USDTNote:
    provider: str
    name: str
    pc: int  # virtual address of the probe site (already adjusted for prelinking)
    semaphore: int  # virtual address of the semaphore, 0 if none
    args: str  # "-4@%edi 8@-24(%rbp)"


class ELF:
    def __init__(self, path: str, debug_dir: Optional[str] = DEBUG_DIR):
        self.path = path
        self.debug_dir = debug_dir  # None: do not look for a separate debug file (it is one)
        with open(path, "rb") as f:
            self.data = f.read()
        d = self.data
        if d[:4] != b"\x7fELF":
            raise ELFError(f"{path} is not an ELF file")
        if d[4] != 2 or d[5] != 1:
            raise ELFError(f"{path}: only 64-bit little-endian ELF files are supported")
        (self.type, _machine, _version, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
         shentsize, shnum, shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", d, 16)
        self.segments: List[Segment] = []
        for i in range(phnum):
            p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = \
                struct.unpack_from("<IIQQQQQQ", d, phoff + i * phentsize)
            if p_type == PT_LOAD:
                self.segments.append(Segment(p_vaddr, p_offset, p_filesz, p_memsz, p_flags))
        self.sections: List[Tuple[str, int, int, int, int, int, int]] = []
        raw = [struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize) for i in range(shnum)]
        strtab_off = raw[shstrndx][4] if shnum and shstrndx < shnum else 0
        for name, stype, _flags, addr, off, size, link, _info, _align, entsize in raw:
            self.sections.append((self._str(strtab_off, name), stype, addr, off, size, link, entsize))
        self._symbols: Optional[List[Tuple[int, int, str]]] = None
        self._by_name: Optional[Dict[str, Tuple[int, int]]] = None  # function -> (address, size)

    def _str(self, table: int, off: int) -> str:
        end = self.data.index(b"\0", table + off)
        return self.data[table + off:end].decode("utf-8", "replace")

    @property
    def is_shared(self) -> bool:
        return self.type == 3  # ET_DYN: PIE executables and libraries

    # ---- symbols ------------------------------------------------------------------------------
    def symbols(self) -> List[Tuple[int, int, str]]:
        """(address, size, name) of every defined function, sorted by address."""
        if self._symbols is None:
            seen: Dict[Tuple[int, str], int] = {}
            for name, st_info, st_value, st_size in self._symtab():
                if st_info & 0xF in (STT_FUNC, STT_GNU_IFUNC) and name:
                    seen[(st_value, name)] = st_size
            debug = self.debug_file()
            if debug is not None:
                try:
                    for addr, size, name in ELF(debug, debug_dir=None).symbols():
                        seen.setdefault((addr, name), size)
                except (ELFError, OSError, struct.error):
                    pass  # a broken debug file only costs its symbols
            self._symbols = sorted((a, s, n) for (a, n), s in seen.items())
        return self._symbols

    # ---- separate debug files -------------------------------------------------------------------
    def _section(self, name: str) -> Optional[bytes]:
        for sname, stype, _addr, off, size, _link, _entsize in self.sections:
            if sname == name and stype != 8:  # SHT_NOBITS has no bytes in the file
                return self.data[off:off + size]
        return None

    def build_id(self) -> Optional[str]:
        """The hex build id of the NT_GNU_BUILD_ID note, if any."""
        for _name, stype, _addr, off, size, _link, _entsize in self.sections:
            if stype != SHT_NOTE:
                continue
            pos, end = off, off + size
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", self.data, pos)
                owner = self.data[pos + 12:pos + 12 + namesz]
                desc_at = pos + 12 + ((namesz + 3) & ~3)
                if ntype == NT_GNU_BUILD_ID and owner.rstrip(b"\0") == b"GNU":
                    return self.data[desc_at:desc_at + descsz].hex()
                pos = desc_at + ((descsz + 3) & ~3)
        return None

    def debug_file(self) -> Optional[str]:
        """The separate debug file with this file's full symbol table, where BCC looks for it."""
        if self.debug_dir is None:
            return None
        bid = self.build_id()
        if bid and len(bid) > 2:
            path = os.path.join(self.debug_dir, ".build-id", bid[:2], bid[2:] + ".debug")
            if os.path.isfile(path):
                return path
        link = self._section(".gnu_debuglink")
        if not link or b"\0" not in link:
            return None
        name = link.split(b"\0", 1)[0].decode("utf-8", "replace")
        crc_at = (len(name) + 1 + 3) & ~3
        if not name or "/" in name or len(link) < crc_at + 4:
            return None
        crc = struct.unpack_from("<I", link, crc_at)[0]
        here = os.path.dirname(os.path.abspath(self.path))
        for d in (here, os.path.join(here, ".debug"), self.debug_dir + here):
            path = os.path.join(d, name)
            if os.path.isfile(path) and os.path.realpath(path) != os.path.realpath(self.path) \
                    and _crc32(path) == crc:
                return path
        return None

    def needed(self) -> List[str]:
        """The DT_NEEDED libraries of the dynamic section (sonames: "libc.so.6")."""
        out = []
        for _name, stype, _addr, off, size, link, entsize in self.sections:
            if stype != SHT_DYNAMIC or not entsize:
                continue
            strtab = self.sections[link][3]
            for i in range(size // entsize):
                tag, val = struct.unpack_from("<qQ", self.data, off + i * entsize)
                if tag == 0:
                    break
                if tag == DT_NEEDED:
                    out.append(self._str(strtab, val))
        return out

    def function_names(self) -> List[str]:
        return sorted({n for _, _, n in self.symbols()})

    def function_symbol(self, name: str) -> Optional[Tuple[int, int]]:
        """(address, size) of a function."""
        if self._by_name is None:
            self._by_name = {}
            for addr, size, n in self.symbols():
                self._by_name.setdefault(n, (addr, size))
        return self._by_name.get(name)

    def symbol_address(self, name: str) -> Optional[int]:
        found = self.function_symbol(name)
        return None if found is None else found[0]

    def _symtab(self):
        """(name, st_info, address, size) of every defined symbol of .symtab and .dynsym."""
        for _name, stype, _addr, off, size, link, entsize in self.sections:
            if stype not in (SHT_SYMTAB, SHT_DYNSYM) or not entsize:
                continue
            strtab = self.sections[link][3]
            for i in range(size // entsize):
                st_name, st_info, _other, st_shndx, st_value, st_size = \
                    struct.unpack_from("<IBBHQQ", self.data, off + i * entsize)
                if st_shndx != SHN_UNDEF and st_value:
                    yield self._str(strtab, st_name), st_info, st_value, st_size

    def object_symbol(self, name: str) -> Optional[Tuple[int, int]]:
        """(address, size) of a defined symbol of any kind (a variable too: uaddr())."""
        for n, _info, addr, size in self._symtab():
            if n == name:
                return addr, size
        return None

    def vaddr_to_offset(self, vaddr: int) -> int:
        """File offset of a virtual address (what uprobes attach to)."""
        for s in self.segments:
            if s.vaddr <= vaddr < s.vaddr + max(s.memsz, s.filesz):
                return vaddr - s.vaddr + s.offset
        raise ELFError(f"{self.path}: address 0x{vaddr:x} is in no loadable segment")

    def offset_to_vaddr(self, offset: int) -> Optional[int]:
        for s in self.segments:
            if s.offset <= offset < s.offset + s.filesz:
                return offset - s.offset + s.vaddr
        return None

    def symbolize(self, vaddr: int) -> Optional[Tuple[str, int]]:
        """(function, offset) of the function containing vaddr."""
        syms = self.symbols()
        i = bisect.bisect_right(syms, (vaddr, float("inf"), "")) - 1
        if i < 0:
            return None
        addr, size, name = syms[i]
        if size and vaddr >= addr + size:
            return None
        return name, vaddr - addr

    # ---- Go -----------------------------------------------------------------------------------
    def go_version(self) -> Optional[str]:
        """"go1.22.5" for a binary built by Go (from its .go.buildinfo), "go" when it is Go but the
        version cannot be read, None for any other binary."""
        info = self._section(".go.buildinfo")
        if info is None:
            names = {s for _, _, s in self.symbols()} if self.sections else set()
            return "go" if "runtime.main" in names or self._section(".gopclntab") is not None else None
        if not info.startswith(GO_BUILDINFO_MAGIC) or len(info) < 33:
            return "go"
        if info[15] & 2:  # Go 1.18 and later: the version inline, after the 32-byte header
            n, at = _uvarint(info, 32)
            return info[at:at + n].decode("utf-8", "replace") or "go"
        return "go"

    # ---- USDT ---------------------------------------------------------------------------------
    def usdt_notes(self) -> List[USDTNote]:
        base_addr = next((addr for name, _t, addr, *_ in self.sections if name == ".stapsdt.base"), None)
        out = []
        for name, stype, _addr, off, size, _link, _entsize in self.sections:
            if stype != SHT_NOTE or name != ".note.stapsdt":
                continue
            pos, end = off, off + size
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", self.data, pos)
                pos += 12
                owner = self.data[pos:pos + namesz]
                pos += (namesz + 3) & ~3
                desc = self.data[pos:pos + descsz]
                pos += (descsz + 3) & ~3
                if ntype != NT_STAPSDT or not owner.startswith(b"stapsdt"):
                    continue
                pc, base, sem = struct.unpack_from("<QQQ", desc, 0)
                provider, probe, args = desc[24:].split(b"\0")[:3]
                if base_addr is not None and base:
                    delta = base_addr - base  # prelink adjustment, as in the SystemTap spec
                    pc += delta
                    if sem:
                        sem += delta
                out.append(USDTNote(provider.decode(), probe.decode(), pc, sem, args.decode()))
        return out


GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"


def _uvarint(data: bytes, at: int) -> Tuple[int, int]:
    """A Go unsigned varint at `at`: (value, the offset after it)."""
    value = shift = 0
    while at < len(data):
        b = data[at]
        at += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return value, at


def go_register_abi(version: Optional[str]) -> bool:
    """Whether a Go binary passes arguments in registers (Go 1.17 and later on amd64); a Go binary
    whose version cannot be read is taken to be a recent one."""
    if version is None:
        return False
    parts = version[2:].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (1, 17)
    except (ValueError, IndexError):
        return True


def _crc32(path: str) -> int:
    import zlib

    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return crc


@lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int, size: int) -> ELF:
    return ELF(path)


def open_elf(path: str) -> ELF:
    """A cached ELF for path (re-read when the file changes)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ELFError(f"{path}: {e.strerror}") from None
    return _load(path, st.st_mtime_ns, st.st_size)


PF_X = 1


def symbol_file_offset(path: str, func: str) -> int:
    """The file offset of function `func` in the ELF file at path (where a uprobe attaches): its
    first instruction's, in the file's bytes of an executable segment (a function symbol anywhere
    else, as a debug file of another build could give, is refused: a uprobe there never fires)."""
    elf = open_elf(path)
    addr = elf.symbol_address(func)
    if addr is None:
        raise ELFError(f"no function named '{func}' in {path}")
    for s in elf.segments:
        if s.flags & PF_X and s.vaddr <= addr < s.vaddr + s.filesz:
            return addr - s.vaddr + s.offset
    raise ELFError(f"function '{func}' of {path} is at 0x{addr:x}, outside the file's executable code")


def address_file_offset(path: str, addr: int) -> int:
    """The file offset of a virtual address of the file (`uprobe:PATH:0xADDR`); an address in no
    segment is taken as a file offset already."""
    elf = open_elf(path)
    try:
        return elf.vaddr_to_offset(addr)
    except ELFError:
        return addr


def function_code(path: str, func: str) -> bytes:
    """The machine code of function `func` of the ELF file at path: its symbol's size in bytes from
    its first instruction."""
    start = symbol_file_offset(path, func)  # (refuses a function it has not)
    elf = open_elf(path)
    return elf.data[start:start + elf.function_symbol(func)[1]]  # type: ignore[index]
