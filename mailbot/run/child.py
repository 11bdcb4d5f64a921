"""Helper processes of a pass (the read-ahead workers, the courier): how they start, talk and
end.

A helper is a plain subprocess (`python -m MODULE PARENT_PID`) that talks length-prefixed
pickles over its stdin/stdout: nothing of the parent is inherited (no lock another thread of a
running service holds) and nothing of it is re-imported (unlike multiprocessing's spawn, which
re-runs the parent's main script). It lives for one run of the pipeline, and never longer than
its parent: it exits at the end of its input, and on Linux the kernel kills it the moment the
parent dies (PR_SET_PDEATHSIG), even by SIGKILL and even while it is busy or stopped. (The
kernel watches the thread that started the helper; a pass opens and closes its helpers in one
thread, so that thread outlives them.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
import subprocess
import sys
from typing import BinaryIO

_LENGTH = struct.Struct(">Q")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def start_child(module: str, *, buffered: bool = True) -> subprocess.Popen:
    """Start `python -m module PARENT_PID`, importing mailbot from where this process did,
    installed or not; `buffered=False`: its pipes unbuffered on this side (a parent that
    `select`s on the helper's output must not have answers sitting in a buffer). Raises
    OSError when no process can be started."""
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": home + (os.pathsep + path if path else "")}
    return subprocess.Popen([sys.executable, "-m", module, str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                            env=env, bufsize=-1 if buffered else 0)


def stop_child(proc: subprocess.Popen) -> None:
    """End of input (the helper exits), killed if it does not within 5 s."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def send_frame(stream: BinaryIO, payload: bytes, *more: bytes) -> None:
    """One frame, whole (an unbuffered pipe may take part of a write); with `more`, those
    frames after it in the same write: each write wakes the helper, and on a busy machine the
    writer may then wait for a core."""
    view = memoryview(b"".join(part for frame in (payload, *more)
                               for part in (_LENGTH.pack(len(frame)), frame)))
    while view:
        view = view[stream.write(view) or 0:]
    stream.flush()


def receive_frame(stream: BinaryIO) -> bytes:
    (size,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size, "the helper closed its output"))
    return _read_exactly(stream, size, "the helper closed its output mid-answer")


def _read_exactly(stream: BinaryIO, size: int, closed: str) -> bytes:
    """`size` bytes (an unbuffered pipe gives what has arrived so far); EOFError if it ends."""
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            raise EOFError(closed)
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def die_with_parent(parent: int) -> bool:
    """Have the kernel SIGKILL this process when `parent` dies (Linux), and check that it has
    not died already, before the request took effect. False: the parent is gone, exit now.

    Done first thing in the helper rather than in a preexec_fn, which is not safe in a parent
    that runs threads."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the end of input still stops us
            pass
    return os.getppid() == parent


def child_streams() -> tuple[BinaryIO, BinaryIO]:
    """In the helper, first thing: die with the parent (exit now if it is gone), ignore Ctrl-C
    (it reaches the whole process group; the parent decides when to stop, by closing our
    input); the requests on stdin, the answers on the original stdout, and anything a library
    prints on stderr."""
    if len(sys.argv) > 1 and not die_with_parent(int(sys.argv[1])):
        sys.exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return sys.stdin.buffer, answers


def exit_at_once() -> None:
    """In the helper, once its work is done and answered: exit without tearing the
    interpreter down. Why: the pass waits for its helpers to exit before it returns, and
    unloading what a reader imported (mail-parser, lxml, the read/ package) took tens of
    milliseconds, for nothing: every answer is already flushed, and the kernel frees the rest."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
