"""Deciding in a helper process while this one sends and files: passes of several batches.

Why: on a backlog, one process that decides a batch and then waits while its replies go out
leaves the other cores idle and every SMTP round trip unhidden. With a decider, the first batch
of a big pass is decided here as before, and the next ones in a helper process (mailbot.run.
child) while this process sends the replies of the batches already decided and files their
mails (`pipeline.answer_batch`).

Nothing changes in what happens to a single mail, nor in the order of its commits: the decider
records, claims and decides it (`pipeline.decide_batch`, the same code as in-process), and only
when the decider has reported its batch, every decision of it committed, does this process send
its replies (marking each sent), file the mails and let go of their claims. Decisions stay one
at a time in inbox order: while the decider decides, this process decides nothing. The decider
works under this run's name (`App.run_id`), so its claims are this run's, and with this run's
rules, templates and version numbers for the whole pass; it has no mailbox and no SMTP server.

A crash of either process is a crash of the pass: the decider dies with its parent, and a
decider that dies or fails hands the rest of the pass back to this process, which handles the
batches it had not reported as after any crash (a mail whose decision committed is answered, one
whose decision did not is decided). The log lines the decider writes come back with its batch
and go to this process's handlers, so they land in the same log, in order.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from mailbot.answer.render import Renderer
from mailbot.config import Config
from mailbot.errors import StoreError
from mailbot.model import RawMail
from mailbot.ruleset import Ruleset
from mailbot.run import child
from mailbot.run.app import BATCH_SIZE, App, RunReport
from mailbot.store import MailRecord

log = logging.getLogger("mailbot")

DECIDER_PART = BATCH_SIZE // 2  # mails per part the decider is given (pipeline._with_decider)
DECIDER_AHEAD = 3  # parts given to the decider beyond the one being answered: it never waits


class DeciderGone(Exception):
    """The decider died or failed: the pass goes on in this process."""


@dataclass
class Setup:
    """What the decider needs to decide as this process would (sent once, at its start)."""

    config: Config
    rules: Ruleset
    templates_dir: str
    renderer_limits: dict[str, Any]
    versions: tuple[Any, Any]  # the rules and templates folders in use (mailbot.run.versions)
    run_id: str
    read_workers: int | None
    log_levels: tuple[int, int]  # of the root logger and of "mailbot", as in this process
    turns: str | None  # the file both processes' transactions take turns on (Store.take_turns)


@dataclass
class Decided:
    """One batch as the decider reports it."""

    handled: list[MailRecord]  # to answer and file, in order
    claimed: list[int]  # claims taken under this run's name, to let go once answered
    refile: list[tuple[str, str]]  # (mail id, folder): handled before, back in the inbox
    decided: int = 0
    duplicates: int = 0
    read_ahead: int = 0
    errors: list[str] = field(default_factory=list)
    store_error: str | None = None  # the store could not be written: the pass ends


def may_decide_elsewhere(app: App) -> bool:
    """True when a helper process can rebuild this App from its config: an App opened by
    `wiring.open_app` (a test's hand-made App, with its clock, fakes or hooks, stays
    in-process), on a store another process can open, rendering with a plain Renderer."""
    return app.decider and isinstance(app.renderer, Renderer) and app.versions is not None


class Decider:
    """The parent's handle on one decider process: batches in, Decided out, in order."""

    def __init__(self, app: App, proc: subprocess.Popen, setup: bytes) -> None:
        self._app = app
        self._proc = proc
        self._closed = False
        self._out: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.ready = threading.Event()  # the decider has set itself up
        self._out.put(("setup", setup))
        # Two threads, so that neither side ever waits on a full pipe: one writes the batches,
        # one reads the answers as soon as they come.
        self._writer = threading.Thread(target=self._write, daemon=True,
                                        name="mailbot-decider-in")
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="mailbot-decider-out")
        self._writer.start()
        self._reader.start()

    @classmethod
    def start(cls, app: App) -> Decider | None:
        """A decider for the rest of this pass, booting while the caller goes on; None if no
        helper process can be had (the pass stays in-process)."""
        renderer = app.renderer
        assert isinstance(renderer, Renderer)
        setup = Setup(config=app.config, rules=app.rules,
                      templates_dir=str(renderer.templates_dir),
                      renderer_limits={"max_output": renderer.max_output,
                                       "max_steps": renderer.max_steps,
                                       "time_limit": renderer.time_limit},
                      versions=(app.versions.rules, app.versions.templates),
                      run_id=app.run_id, read_workers=app.read_workers,
                      log_levels=(logging.getLogger().getEffectiveLevel(),
                                  log.getEffectiveLevel()), turns=None)
        try:
            setup.turns = app.store.take_turns()
            payload = pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL)
            proc = child.start("mailbot.run.decider")
        except Exception as exc:  # no helper process: decide here
            app.store.share_turns(None)
            log.warning("event=decider_off error=%r: the pass decides in-process", str(exc))
            return None
        return cls(app, proc, payload)

    def submit(self, raws: Sequence[RawMail]) -> None:
        self._out.put(("batch", pickle.dumps(list(raws), protocol=pickle.HIGHEST_PROTOCOL)))

    def next(self) -> Decided:
        """The next batch's report, waiting for it; DeciderGone if the decider cannot give it
        (its log lines so far are handed on first)."""
        kind, value = self._results.get()
        if kind == "gone":
            raise DeciderGone(value)
        decided, records = value
        _replay(records)
        return decided

    def close(self, *, abort: bool = False) -> None:
        """End the decider: at the end of the pass, once it has reported every batch; with
        `abort` (the pass failed, or the decider did), at once, whatever it was doing (a
        decision it had not committed is as after a crash: made again by the next run)."""
        if self._closed:
            return
        self._closed = True
        if abort:
            self._proc.kill()
        self._out.put(None)
        self._writer.join(timeout=30)
        child.stop(self._proc, timeout=30)
        self._reader.join(timeout=5)
        self._app.store.share_turns(None)

    def _write(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        while (item := self._out.get()) is not None:
            try:
                child.send_frame(stdin, item[1])
            except OSError:  # the decider is gone; the reader reports it
                return

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        while True:
            try:
                status, payload = pickle.loads(child.receive_frame(stdout))
            except Exception as exc:  # EOF: it died (or was stopped at the end of the pass)
                code = self._proc.poll()
                self._results.put(("gone", f"the decider process ended ({exc}; exit {code})"))
                return
            if status == "ready":  # set up: the parent may hand it the next mails
                self.ready.set()
            elif status == "ok":
                self._results.put(("ok", payload))
            else:
                _replay(payload[1])
                self._results.put(("gone", payload[0]))
                return


# -- the decider process -----------------------------------------------------------------------

class _NoMailbox:
    """The decider's source and sink: it decides, the parent fetches, sends and files."""

    name = "decider"

    def __getattr__(self, attribute: str) -> Any:
        raise RuntimeError(f"the decider process has no mailbox or server ({attribute})")


class _Collect(logging.Handler):
    """Keeps the decider's log records, formatted, to hand them to the parent with the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        data = dict(record.__dict__)
        data["msg"] = record.getMessage()
        data["args"] = None
        if record.exc_info:
            data["exc_text"] = logging.Formatter().formatException(record.exc_info)
        data["exc_info"] = None
        self.records.append(data)

    def take(self) -> list[dict[str, Any]]:
        taken, self.records = self.records, []
        return taken


def _replay(records: Sequence[dict[str, Any]]) -> None:
    for data in records:
        record = logging.makeLogRecord(data)
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _decider_app(setup: Setup) -> App:
    from mailbot.run import versions
    from mailbot.run.wiring import CRASH_VARIABLE, open_store

    renderer = Renderer(setup.templates_dir, **setup.renderer_limits)
    store = open_store(setup.config)
    store.share_turns(setup.turns)
    app = App(config=setup.config, rules=setup.rules, store=store,
              renderer=renderer, source=_NoMailbox(), sink=_NoMailbox(),  # type: ignore[arg-type]
              read_workers=setup.read_workers, run_id=setup.run_id)
    rules_folder, templates_folder = setup.versions
    app.versions = versions.Watch(rules_folder, templates_folder, app.rules, renderer)
    crash_at = os.environ.get(CRASH_VARIABLE)
    if crash_at:  # the crash tests: a crash here is the whole pass's
        app.hook = _crash_with_parent(crash_at)
    return app


def _crash_with_parent(spec: str) -> Any:
    """MAILBOT_CRASH_AT in the decider (mailbot.run.wiring.crash_hook): at the point, SIGKILL
    the parent first, as a power cut takes both processes, then this one."""
    point, _, nth = spec.partition(":")
    remaining = [int(nth) if nth else 1]
    parent = os.getppid()

    def hook(name: str) -> None:
        if name == point:
            remaining[0] -= 1
            if remaining[0] == 0:
                os.kill(parent, signal.SIGKILL)
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _noting(refile: list[tuple[str, str]]) -> Any:
    """`refile` for decide_batch: the parent files those mails when it answers the batch."""
    return lambda mail_id, folder: refile.append((mail_id, folder))


def _serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The decider process: the setup, then batch after batch until the end of input."""
    from mailbot.run.pipeline import decide_batch
    from mailbot.run.readahead import ReadAhead

    setup: Setup = pickle.loads(child.receive_frame(requests))
    collect = _Collect()
    root = logging.getLogger()
    root.handlers[:] = [collect]
    root.setLevel(setup.log_levels[0])
    log.setLevel(setup.log_levels[1])
    for noisy in ("mailparser", "mail-parser"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    try:
        app = _decider_app(setup)
    except Exception as exc:
        log.exception("the decider could not start")
        child.send_frame(answers, pickle.dumps(("error", (f"{type(exc).__name__}: {exc}",
                                                           collect.take()))))
        return
    child.send_frame(answers, pickle.dumps(("ready", None)))
    with ReadAhead(app.rules, app.config.limits, app.own_addresses,
                   reference_prefix=app.config.bot.reference_prefix,
                   workers=app.read_workers) as readahead:
        while True:
            try:
                raws: list[RawMail] = pickle.loads(child.receive_frame(requests))
            except EOFError:
                break
            report = RunReport()
            decided = Decided(handled=[], claimed=[], refile=[])
            before = readahead.read_by_workers
            try:
                decided.handled = decide_batch(app, raws, report, readahead, decided.claimed,
                                               refile=_noting(decided.refile))
            except StoreError as exc:
                decided.store_error = str(exc)
            except Exception as exc:  # decide_batch keeps going past a mail's fault; not this
                log.exception("the decider failed on a batch")
                answer = ("error", (f"{type(exc).__name__}: {exc}", collect.take()))
                child.send_frame(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
                return
            decided.decided, decided.duplicates = report.decided, report.duplicates
            decided.read_ahead = readahead.read_by_workers - before
            decided.errors = report.errors
            answer = ("ok", (decided, collect.take()))
            child.send_frame(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
            if decided.store_error is not None:
                break
    app.store.close()


if __name__ == "__main__":
    # Run as mailbot.run.decider, not as __main__, so that what it pickles (Decided) is what
    # the parent knows by that name.
    from mailbot.run import decider

    child.helper_main(decider._serve)
