"""The -c command: started once every probe is attached, with its pid known to BPF (`cpid`)
before it runs a single instruction; the trace ends when it exits."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from typing import Callable, List, Optional

from kubectl_pytrace.errors import TraceError


class Command:
    """A forked child we reap ourselves."""

    def __init__(self, pid: int):
        self.pid = pid
        self.status: Optional[int] = None

    @classmethod
    def start(cls, argv: List[str], announce: Callable[[int], None]) -> "Command":
        """Forks the child stopped (SIGSTOP: no read or open that a trace of its syscalls would
        see), calls announce(pid) (the engine writes cpid into the program), then lets it exec.
        An exec failure comes back through a close-on-exec pipe."""
        path = shutil.which(argv[0])
        if path is None:
            raise TraceError(f"cannot run {argv[0]}: command not found")
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            try:
                _die_with(parent)
                os.kill(os.getpid(), signal.SIGSTOP)
                os.execv(path, argv)
            except OSError as e:
                os.write(err_w, str(e.errno).encode())
            finally:
                os._exit(127)
        os.close(err_w)
        _, status = os.waitpid(pid, os.WUNTRACED)
        child = cls(pid)
        if not os.WIFSTOPPED(status):
            child.status = os.waitstatus_to_exitcode(status)
            os.close(err_r)
            raise TraceError(f"cannot run {argv[0]}: the child process died before exec")
        announce(pid)
        os.kill(pid, signal.SIGCONT)
        failed = os.read(err_r, 16)
        os.close(err_r)
        if failed:
            child.wait()
            raise TraceError(f"cannot run {argv[0]}: {os.strerror(int(failed))}")
        return child

    def poll(self) -> Optional[int]:
        if self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self) -> int:
        if self.status is None:
            self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.status

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and reap (teardown: nothing of ours may be left running)."""
        self._signal(signal.SIGKILL)
        if self.status is None:
            with contextlib.suppress(ChildProcessError):
                self.wait()

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """In the child: SIGKILL when the tracer dies, even by SIGKILL (as bpftrace's -c child does)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the tracer died before the call
        os._exit(127)
