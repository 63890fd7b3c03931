"""User text never reaches the generated C: string literals become byte stores, names become
generated identifiers, formats stay in Python. Each program here either compiles into C that holds
none of its strings verbatim (and whose byte stores decode back to exactly the program's bytes),
or is rejected with a diagnostic."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from kubectl_pytrace.lang import CompileError, compile_program
from kubectl_pytrace.lang.env import Environment

from .fakeenv import FakeEnv

PAYLOADS = [
    b'"); system("rm -rf /"); //',
    b"*/ int evil; /*",
    b"/* comment",
    b"end */",
    b"%s%n%d%%%x%p%c%%",
    b"\\n\\t\\\\ \\\"",
    b"a\0b\0\0c",
    b"\0",
    b"caf\xc3\xa9 \xff\xfe\x80\x01\x7f",
    b"#include </etc/passwd>\n#define X }",
    b"??=??/??' trigraphs",
    b"line1\nline2\rline3\ttab",
    b"`$(reboot)` ${IFS} 'q'",
    bytes(range(1, 64)),
    bytes(range(64, 127)),
    bytes(range(127, 190)),
    bytes(range(190, 253)),
    b"\xfd\xfe\xff" + b"x" * 60,  # 63 bytes: the longest literal (bpftrace's strings are 64 with the NUL)
]


def literal(data: bytes) -> str:
    """A program string literal that stands for data (every byte escaped as octal)."""
    return '"' + "".join("\\%03o" % b for b in data) + '"'


def byte_stores(c_text: str):
    """dest -> {index: byte} of the `dest[i] = b;` statements of the generated C."""
    stores = defaultdict(dict)
    for dest, i, b in re.findall(r"^\s*([\w>.-]+)\[(\d+)\] = (-?\d+);$", c_text, re.M):
        stores[dest][int(i)] = int(b) & 0xFF
    return stores


def decoded(stores, dest: str) -> bytes:
    got = stores[dest]
    return bytes(got.get(i, 0) for i in range(max(got) + 1)) if got else b""


def compile_c(src: str, env=None, params=None) -> str:
    return compile_program(src, env=env or Environment(), params=params).c.text


def assert_not_in_c(c_text: str, data: bytes):
    for piece in re.split(rb"[\0\n]", data):
        text = piece.decode("utf-8", "replace")
        if len(text.strip()) >= 3:
            assert text not in c_text, f"{text!r} reached the C source"


@pytest.mark.parametrize("data", PAYLOADS, ids=[repr(p[:12]) for p in PAYLOADS])
def test_a_string_stored_in_a_map_is_byte_stores(data):
    c = compile_c(f"BEGIN {{ @x = {literal(data)}; }}")
    assert_not_in_c(c, data)
    (dest,) = re.findall(r"map_0\.update\(&\w+, &(\w+)\);", c)
    assert decoded(byte_stores(c), dest) == data.rstrip(b"\0") or data == b"\0"
    # every byte of the literal is stored, NULs included, in order
    assert [byte_stores(c)[dest].get(i, 0) for i in range(len(data))] == list(data)


@pytest.mark.parametrize("data", PAYLOADS, ids=[repr(p[:12]) for p in PAYLOADS])
def test_a_string_sent_by_printf_is_byte_stores_and_the_format_stays_in_python(data):
    fmt = b"fmt: %s " + data.replace(b"%", b"").replace(b"\0", b"")
    compiled = compile_program(f"BEGIN {{ printf({literal(fmt)}, {literal(data)}); }}")
    c = compiled.c.text
    assert_not_in_c(c, fmt)
    assert_not_in_c(c, data)
    stores = byte_stores(c)
    (dest,) = [d for d in stores if d.endswith("->a0")]
    assert [stores[dest].get(i, 0) for i in range(len(data))] == list(data)
    (event,) = compiled.c.events.values()
    assert event.kind == "printf" and event.fmt is not None


@pytest.mark.parametrize("data", PAYLOADS, ids=[repr(p[:12]) for p in PAYLOADS])
def test_map_keys_and_comparisons(data):
    c = compile_c(f"BEGIN {{ @k[{literal(data)}, 1] = 1; if (comm == {literal(data)}) {{ @y = 1; }} "
                  f"@s = strncmp(comm, {literal(data)}, 3); }}")
    assert_not_in_c(c, data)
    stores = byte_stores(c)
    (key,) = [d for d in stores if d.endswith(".k0")]
    assert [stores[key].get(i, 0) for i in range(len(data))] == list(data)
    # the comparison is one `if (buf[i] != byte) break;` per byte up to the first NUL
    compared = [int(b) & 0xFF for b in re.findall(r"if \(comm\d+\[\d+\] != (-?\d+)\) break;", c)]
    first = data.split(b"\0")[0] + b"\0"
    assert compared[:len(first[:16])] == list(first[:16])


def test_long_positional_parameters_are_cut_like_str_does():
    c = compile_c('BEGIN { @x = $1; }', params=["p" * 100])
    stores = byte_stores(c)
    assert decoded(stores, [d for d in stores if d.startswith("val")][0]) == b"p" * 63


def test_printf_and_time_formats_may_be_long():
    # they stay in Python (bpftrace accepts them too)
    compiled = compile_program('BEGIN { printf("' + "f" * 500 + '%d\\n", 1); time("' + "%H" * 100 + '"); }')
    assert "f" * 20 not in compiled.c.text


def test_positional_parameters_are_byte_stores():
    evil = '"); system("rm -rf /"); /* */ //'
    c = compile_c('BEGIN { @x = $1; printf("%s\\n", $1); }', params=[evil])
    assert_not_in_c(c, evil.encode())
    stores = byte_stores(c)
    assert decoded(stores, [d for d in stores if d.startswith("val")][0]) == evil.encode()


def test_numeric_positional_parameters_become_numbers():
    c = compile_c("BEGIN { @x = $1 + $2; }", params=["0x10", "-1"])
    assert "16ULL" in c and "18446744073709551615ULL" in c
    with pytest.raises(CompileError, match="does not fit in 64 bits"):
        compile_c("BEGIN { @x = $1 + 1; }", params=["1" * 30])


def test_probe_names_and_symbols_stay_out_of_c():
    sym = '"*/ evil(); /*"'
    src = f"uprobe:/tmp/x:{sym} {{ printf(\"%s %s\\n\", func, probe); @[func] = count(); }}"
    compiled = compile_program(src)
    assert "evil" not in compiled.c.text
    assert [a.spec.func for a in compiled.c.attachments] == ["*/ evil(); /*"]
    stores = byte_stores(compiled.c.text)
    (dest,) = [d for d in stores if d.endswith("->a0")]
    assert decoded(stores, dest) == b"*/ evil(); /*"


def test_file_names_includes_and_comments_stay_out_of_c():
    src = '#include "/etc/shadow"\n// system("x")\n/* */ BEGIN /* hidden() */ { @x = 1; }'
    c = compile_program(src, filename='*/ x(); /*').c.text
    for text in ("/etc/shadow", "system", "hidden", "x();"):
        assert text not in c


@pytest.mark.parametrize("name", ["@evil_map_name", "@", "@1evil_map", "@_evil_", "@EvilMap"])
def test_map_names_become_generated_identifiers(name):
    compiled = compile_program(f"BEGIN {{ {name}[1] = 1; {name}[2]++; print({name}); clear({name}); }}")
    c = compiled.c.text
    if name != "@":
        assert name[1:] not in c
    assert "BPF_TABLE(\"hash\", struct map_0_key, s64, map_0, 4096);" in c
    assert compiled.c.maps[name].cname == "map_0"  # the runtime knows the name; the C does not


@pytest.mark.parametrize("name", ["$evil_var", "$return", "$int", "$pytrace_lost_event", "$t1", "$key1",
                                  "$ctx", "$_"])
def test_variable_names_are_prefixed(name):
    c = compile_c(f"BEGIN {{ {name} = 1; {name}++; @x = {name}; }}")
    bare = name[1:]
    assert f"s64 v_{bare} = 0;" in c
    assert f"(v_{bare}++)" in c and f"(s64)(v_{bare});" in c
    if bare == "evil_var":
        assert c.count(bare) == c.count("v_" + bare)


@pytest.mark.parametrize("src, message", [
    ('BEGIN { @x = "' + "a" * 1024 + '"; }', "string is too long (over 1024 bytes)"),
    ('BEGIN { @x = "a\\\nb"; }', "unterminated string"),
    ('BEGIN { @x = 1; } \\\nEND { }', "unexpected '\\'"),
    ('BEGIN { @x = "\\q"; }', "invalid escape sequence"),
    ('BEGIN { @x = "\\400"; }', "invalid octal escape"),
    ('BEGIN { @x = 1\x00; }', "unexpected character '\\x00'"),  # a raw NUL outside a string
    ('BEGIN { @x = `id`; }', "unexpected character '`'"),
    ("BEGIN { $x = 1; $x; } */ BEGIN { }", "syntax error"),
    ("BEGIN { @x = 1; } /* unterminated", "syntax error"),
])
def test_rejected_with_a_diagnostic(src, message):
    with pytest.raises(CompileError) as info:
        compile_c(src)
    assert message in str(info.value)


def test_raw_non_ascii_and_control_characters_in_strings():
    src = 'BEGIN { @x = "é\x00\x01\x7f€"; }'  # raw bytes in the program text, a NUL too
    c = compile_c(src)
    stores = byte_stores(c)
    (dest,) = re.findall(r"map_0\.update\(&\w+, &(\w+)\);", c)
    assert decoded(stores, dest) == "é\x00\x01\x7f€".encode()
    assert "é" not in c and "€" not in c
    assert c.isascii()


def test_struct_and_field_names_stay_out_of_c():
    c = compile_c("BEGIN { $t = (struct task_struct *)curtask; @p = $t->real_parent->pid; @c = $t->comm; }",
                  env=FakeEnv())
    for name in ("task_struct", "real_parent", "->pid", "comm["):
        assert name not in c


def test_generated_c_is_plain_ascii_for_every_payload():
    for data in PAYLOADS:
        c = compile_c(f'BEGIN {{ @x[{literal(data)}] = {literal(data)}; printf("%s", {literal(data)}); }}')
        assert c.isascii()
        assert "\0" not in c


def test_a_callback_must_save_its_arguments_before_clobbering_them():
    """bcc_compile.link() appends loop callbacks only if they store r1.. first; clang may hoist a
    constant move (r0 = 1 for a later `return 1`) before that store."""
    import struct

    from kubectl_pytrace.bpf.bcc_compile import _saves_arguments_first

    store = struct.pack("<BBhi", 0x7B, 10 | 1 << 4, -8, 0)  # *(u64 *)(r10 - 8) = r1
    r0_is_1 = struct.pack("<BBhi", 0xB7, 0, 0, 1)  # r0 = 1
    r1_is_1 = struct.pack("<BBhi", 0xB7, 1, 0, 1)  # r1 = 1: the argument is gone
    assert _saves_arguments_first(store + r0_is_1)
    assert _saves_arguments_first(r0_is_1 + store)
    assert not _saves_arguments_first(r1_is_1 + store)
    assert not _saves_arguments_first(r0_is_1 * 3)
