"""Reading mails ahead in worker processes while the main process decides.

Reading a mail (mail-parser, inscriptis, openpyxl: `extract.read_mail`) is pure CPU and has no
side effect: no store, no mailbox, no network. So while the pipeline records and decides mail
k, worker processes can already read mails k+1, k+2, ... of the batch. What the pipeline does
with each mail, and in which order, does not change: it still records the mail (a commit),
calls the `after_fetch` hook, and only then uses what was read; a reading nobody needs any
more (the process dies, the mail turns out to be a duplicate) is simply dropped.

Work is balanced by stealing: when the pipeline needs a mail whose chunk no worker has taken
yet, it takes the chunk back and reads those mails itself, so the main process never waits on
a queue. Anything wrong with the workers (no subprocess possible, a worker that died on a
mail) turns reading back in-process for the rest of the run; a mail that killed a worker is
then read in the main process, after its attempt was counted, and is quarantined as before if
it keeps failing.

Workers are helper processes of the pass (mailbot.run.child: plain subprocesses talking
pickles over pipes, never outliving their parent).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from mailbot.config import BotConfig
from mailbot.model import Extraction, ParsedMail, RawMail
from mailbot.run.child import (
    child_streams,
    exit_at_once,
    receive_frame,
    send_frame,
    start_child,
    stop_child,
)

log = logging.getLogger("mailbot")

MIN_MAILS = 16  # fewer mails than this are read in-process: not worth a worker
CHUNK = 4  # mails per task: small enough to steal, large enough to amortise the round trip
# How often a pass waiting for a worker looks up from the wait (`take`'s `meanwhile`).
MEANWHILE_SECONDS = 0.001
MAX_WORKERS = 3

Read = tuple[ParsedMail, Extraction]

_QUEUED, _TAKEN, _STOLEN = "queued", "taken", "stolen"


def default_workers() -> int:
    """One worker per core the main process leaves free (at most MAX_WORKERS)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, MAX_WORKERS))


class _Chunk:
    def __init__(self, datas: list[bytes]) -> None:
        self.datas = datas
        self.state = _QUEUED
        self.results: list[Read] | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class ReadAhead:
    """Readings of a run's mails, made ahead by worker processes where that pays."""

    def __init__(self, rules: Any, limits: Any, own_addresses: Sequence[str], *,
                 reference_prefix: str = BotConfig.reference_prefix,
                 workers: int | None = None) -> None:
        self._setup = (rules, limits, tuple(own_addresses), reference_prefix)
        self._init = b""  # the setup, pickled when the first worker starts
        self.workers = default_workers() if workers is None else workers
        self._broken = self.workers <= 0
        self._lock = threading.Condition()
        self._queue: list[_Chunk] = []  # not taken by a worker yet, oldest first
        self._pending: dict[tuple[str, str], tuple[_Chunk, int]] = {}  # mail -> (chunk, index)
        self._threads: list[threading.Thread] = []
        self._procs: list[subprocess.Popen] = []
        self._closing = False
        self._warm = False  # a worker has delivered: waiting for a taken chunk is worth it
        self.read_by_workers = 0  # mails whose reading came from a worker (the benchmark)

    # -- the pipeline's side -------------------------------------------------------------------

    def submit(self, raws: Sequence[RawMail]) -> None:
        """Start reading these mails (oldest first) in the workers, if that is worth it."""
        wanted = [raw for raw in raws if not raw.oversized and _key(raw) not in self._pending]
        if self._broken or len(wanted) < MIN_MAILS:
            return
        self._start_workers()
        with self._lock:
            if self._broken:
                return
            for start in range(0, len(wanted), CHUNK):
                part = wanted[start:start + CHUNK]
                chunk = _Chunk([raw.data for raw in part])
                self._queue.append(chunk)
                for index, raw in enumerate(part):
                    self._pending[_key(raw)] = (chunk, index)
            self._lock.notify_all()

    def take(self, raw: RawMail, meanwhile: Callable[[], None] | None = None) -> Read | None:
        """The reading of `raw`, if a worker made it or is making it; None: read it yourself.
        `meanwhile`: called every millisecond while the worker is still at it (the pass hands
        its replies on meanwhile: mailbot.run.courier.Deliveries.poll)."""
        entry = self._pending.pop(_key(raw), None)
        if entry is None:
            return None
        chunk, index = entry
        with self._lock:
            if chunk.state == _QUEUED:  # no worker has it: quicker to read it here
                chunk.state = _STOLEN
                self._queue.remove(chunk)
            if chunk.state == _STOLEN:
                return None
            if not chunk.done.is_set() and not self._warm:
                return None  # the workers are still starting up: do not wait for them
        if meanwhile is None:
            chunk.done.wait()
        else:
            while not chunk.done.wait(MEANWHILE_SECONDS):
                meanwhile()
        if chunk.results is None:
            return None  # the worker failed on it (and reading is in-process from now on)
        self.read_by_workers += 1
        return chunk.results[index]

    def settle(self, timeout: float = 30.0) -> bool:
        """Wait until the workers have read everything submitted (tests); False on timeout."""
        chunks = {id(c): c for c, _ in self._pending.values()}.values()
        deadline = time.monotonic() + timeout
        for chunk in chunks:
            while chunk.state != _STOLEN and not chunk.done.is_set():
                if time.monotonic() > deadline:
                    return False
                chunk.done.wait(0.05)
        return True

    def drop(self, raw: RawMail) -> None:
        """The reading of `raw` is not needed (a duplicate, or decided already)."""
        self._pending.pop(_key(raw), None)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            for chunk in self._queue:
                chunk.state = _STOLEN
            self._queue.clear()
            self._lock.notify_all()
        self._pending.clear()
        for thread in self._threads:
            thread.join(timeout=30)
        for proc in self._procs:
            stop_child(proc)
        self._threads.clear()
        self._procs.clear()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- workers -------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        if self._threads or self._broken:
            return
        try:
            self._init = pickle.dumps(self._setup, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # rules a worker cannot get: read in-process
            self._give_up(exc)
            return
        for number in range(self.workers):
            try:
                proc = start_child("mailbot.run.readahead")
            except OSError as exc:
                if not self._procs:
                    self._give_up(exc)
                    return
                break
            self._procs.append(proc)
            thread = threading.Thread(target=self._serve, args=(proc,), daemon=True,
                                      name=f"mailbot-readahead-{number}")
            self._threads.append(thread)
            thread.start()

    def _serve(self, proc: subprocess.Popen) -> None:
        """Feed one worker chunk after chunk until the run closes (a thread of the parent)."""
        assert proc.stdin is not None and proc.stdout is not None
        try:
            send_frame(proc.stdin, self._init)
        except OSError as exc:
            self._give_up(exc)
            return
        while True:
            with self._lock:
                while not self._queue and not self._closing and not self._broken:
                    self._lock.wait()
                if self._closing or self._broken:
                    return
                chunk = self._queue.pop(0)
                chunk.state = _TAKEN
            try:
                send_frame(proc.stdin, pickle.dumps(chunk.datas, protocol=pickle.HIGHEST_PROTOCOL))
                status, payload = pickle.loads(receive_frame(proc.stdout))
                if status != "ok":
                    raise RuntimeError(f"worker failed: {payload}")
                chunk.results = payload
                with self._lock:
                    self._warm = True
            except Exception as exc:  # a dead or confused worker: stop using them
                chunk.error = exc
                self._give_up(exc)
            finally:
                chunk.done.set()
            if chunk.error is not None:
                return

    def _give_up(self, exc: BaseException) -> None:
        with self._lock:
            if not self._broken:
                log.warning("event=readahead_off error=%r: mails are read in-process", str(exc))
            self._broken = True
            for chunk in self._queue:
                chunk.state = _STOLEN
            self._queue.clear()
            self._lock.notify_all()


def _key(raw: RawMail) -> tuple[str, str]:
    return raw.source, raw.mail_id


def _worker(requests: BinaryIO, answers: BinaryIO) -> None:
    """The worker process: read the setup, then answer chunk after chunk until end of input."""
    from mailbot.read.extract import read_mail

    logging.getLogger("mailparser").setLevel(logging.CRITICAL)  # its warnings are noise here
    try:
        rules, limits, own, prefix = pickle.loads(receive_frame(requests))
    except EOFError:
        return
    while True:
        try:
            datas = pickle.loads(receive_frame(requests))
        except EOFError:
            return
        try:
            answer: tuple[str, Any] = ("ok", [read_mail(d, rules, limits, own,
                                                          reference_prefix=prefix)
                                                for d in datas])
        except Exception as exc:  # read_mail guards itself; belt and braces
            answer = ("error", f"{type(exc).__name__}: {exc}")
        send_frame(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


# Reading ahead is background work: when a core is short, the kernel runs the pass's courier
# (and anything else that wakes up to answer) before it. The pass steals what is not read in
# time, so a worker left behind costs nothing but the work it did not do.
NICENESS = 10


if __name__ == "__main__":
    streams = child_streams()
    try:
        os.nice(NICENESS)
    except OSError:  # not allowed here: read at the same priority
        pass
    _worker(*streams)
    exit_at_once()
