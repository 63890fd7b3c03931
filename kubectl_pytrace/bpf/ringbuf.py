"""A BPF ring buffer read through its mmap'ed pages, in batches, without a callback per record.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (we write it), page 1 the
producer position, then the data pages, mapped twice in a row so a record that wraps around the
end is still contiguous. Each record starts with an 8-byte header: u32 length with a BUSY bit
(still being written) and a DISCARD bit, and u32 page offset.

The two positions are read and written as whole aligned u64s (a memoryview cast to "Q"), never
with struct: struct.pack_into zero-fills its target before writing, and a producer that reads the
consumer position in between sees 0 and, once more than the ring's size has passed through it,
finds no space: an event lost for nothing (measured: 4-7 of 900,000 through a 16 MiB ring).
"""

from __future__ import annotations

import mmap
import select
import struct
from typing import Callable

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
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
        self._cons_pos = memoryview(self._cons).cast("Q")  # [0]: one 8-byte load or store
        self._prod_pos = memoryview(self._prod)[:8].cast("Q")
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
        cons, prod = self._cons_pos[0], self._prod_pos[0]
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
            self._cons_pos[0] = cons  # the space is the producer's again
        return n

    def backlog(self) -> int:
        """Bytes written by the kernel and not consumed yet."""
        return self._prod_pos[0] - self._cons_pos[0]

    def close(self) -> None:
        try:
            self._epoll.close()
            self._data.release()
            self._prod_pos.release()
            self._cons_pos.release()
            self._prod.close()
            self._cons.close()
        except (BufferError, ValueError):
            pass
