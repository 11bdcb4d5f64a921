"""What mailbot's helper processes share: how they start, how they talk, how they die.

A pass may start two kinds of helper process: readers (mailbot.run.readahead) and a decider
(mailbot.run.decider). Both are plain subprocesses (`python -m mailbot.run.X PARENT_PID`) that
talk length-prefixed pickles over their stdin and stdout: nothing of the parent is inherited
(no lock another thread of a running service holds) and nothing of it is re-imported (unlike
multiprocessing's spawn, which re-runs the parent's main script). A helper lives for one pass
and never longer than its parent: it exits at the end of its input, and on Linux the kernel
kills it the moment the parent dies (PR_SET_PDEATHSIG), even by SIGKILL and even while it is
busy. (The kernel watches the thread that started the helper; a pass starts and stops its
helpers in one thread, so that thread outlives them.)
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


def start(module: str) -> subprocess.Popen:
    """`python -m module PARENT_PID`, importing mailbot from where this process did (installed
    or not), with pipes for stdin and stdout; stderr is this process's. Raises OSError."""
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": home + (os.pathsep + path if path else "")}
    return subprocess.Popen([sys.executable, "-m", module, str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                            env=env)


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """End the helper's input (it exits), wait for it, kill it if it does not."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def send_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def receive_frame(stream: BinaryIO) -> bytes:
    """One frame; EOFError when the other side closed its end (before or inside a frame)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the other process closed its output")
    (size,) = _LENGTH.unpack(head)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the other process closed its output mid-frame")
    return payload


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


def helper_main(serve: object) -> None:
    """The helper's entry point: die with the parent (argv[1]), leave Ctrl-C to it (a
    terminal's SIGINT reaches the whole process group; the parent decides when to stop, by
    closing our input), answer on the original stdout and send anything a library prints to
    stderr, then `serve(requests, answers)`."""
    if len(sys.argv) > 1 and not die_with_parent(int(sys.argv[1])):
        sys.exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, answers)  # type: ignore[operator]
