"""A BPF ring buffer read through its mmap'ed pages, in batches, without a callback per record.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (we write it), page 1 the
producer position, then the data pages, mapped twice in a row so a record that wraps around the
end is still contiguous. Each record starts with an 8-byte header: u32 length with a BUSY bit
(still being written) and a DISCARD bit, and u32 page offset.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
from typing import Callable, List, Tuple

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingBuffer:
    def __init__(self, map_fd: int, size: int):
        self.fd = map_fd
        self.size = size
        self.mask = size - 1
        page = mmap.PAGESIZE
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._prod)[page:]
        self._prod_pos = memoryview(self._prod)[:8]
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout: float) -> None:
        """Sleeps until the kernel signals new data or `timeout` seconds pass."""
        try:
            self._epoll.poll(timeout)
        except InterruptedError:
            pass

    def drain(self, handle: Callable[[memoryview], bool], limit: int = 1 << 30) -> int:
        """Hands every complete record to handle(view); stops early when it returns False.

        Returns the number of records consumed. The view is valid only during the call.
        """
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod_pos, 0)[0]
        data, mask = self._data, self.mask
        n = 0
        try:
            while cons < prod and n < limit:
                off = cons & mask
                length = _U32.unpack_from(data, off)[0]
                if length & BUSY:
                    break
                size = length & ~(BUSY | DISCARD)
                if not length & DISCARD:
                    n += 1
                    if not handle(data[off + HDR: off + HDR + size]):
                        cons += (size + HDR + 7) & ~7
                        break
                cons += (size + HDR + 7) & ~7
        finally:
            _U64.pack_into(self._cons, 0, cons)
        return n

    def pending(self) -> bool:
        cons = _U64.unpack_from(self._cons, 0)[0]
        prod = _U64.unpack_from(self._prod_pos, 0)[0]
        return cons < prod

    def close(self) -> None:
        try:
            self._epoll.close()
            self._data.release()
            self._prod_pos.release()
            self._prod.close()
            self._cons.close()
        except (BufferError, ValueError):
            pass
