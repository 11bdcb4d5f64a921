"""A batch's replies go out while the next mails are decided.

Why: sending a reply is mostly waiting, for the SMTP server to take MAIL, RCPT, DATA and the
message, one round trip after another (about 1.5 ms a reply on loopback, tens of milliseconds
against a real provider). Done in turn with the decisions, a pass waits for every one of them.
The courier is a helper process (mailbot.run.courier_lines) with SMTP connections of its own:
it sends what it is handed, one message at a time, and answers what came of it. A process
rather than a thread, because a thread would need this process's GIL for each of those round
trips while the pass is busy deciding, and would wait for it every time.

Everything that touches the store or the mailbox (claims, "sent" marks, copies for Sent,
filing) stays in the pass, in the order `deliver.delivery_steps` gives it, which hands out
the next message only once the last one is marked. The courier is handed that next message
early and sends all of it but its final dot, on its other connection; the dot goes only when
the pass says so, after the mark (and after the courier's fsync of the WAL, which puts the mark
on the disk: `Send.sync_first`). So at most one accepted reply is ever unmarked, as when the
pass sends them itself, and what is left after the pass's word is one short round trip.

`Deliveries` is the pipeline's side: the batches whose replies are to go, oldest first, each
sending in groups of mails as they are decided, which the pass looks in on between two mails
(`poll`); a batch is filed once its replies are out. A pass of one batch starts no courier
process (it would only be waiting for the helper to start): it sends each group itself,
between two mails.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import pickle
import select
import subprocess
from collections.abc import Generator
from typing import Any

from mailbot.errors import StoreError
from mailbot.run.app import App, RunReport
from mailbot.run.child import receive_frame, send_frame, start_child, stop_child
from mailbot.run.claims import let_go
from mailbot.run.deliver import claim_due, delivery_steps, make_copies, next_send
from mailbot.run.filing import file_mails
from mailbot.run.sending import DELIVERY_OUTCOMES, Outcome, Send
from mailbot.store import MailRecord

log = logging.getLogger("mailbot")

Steps = Generator[Send, Outcome, None]

_PICKLE = pickle.HIGHEST_PROTOCOL


class CourierFailed(RuntimeError):
    """The courier's sink failed in a way no delivery outcome names (a bug, a bad message)."""


def can_overlap(app: App) -> bool:
    """Whether the app's sink can be rebuilt in a courier: one that says so (`courier_ready`:
    it pickles as its settings, as the SMTP sink does) and whose `send` was not replaced on
    the instance (a test's or a benchmark's wrapper, which only this process would run)."""
    sink = app.sink
    return bool(getattr(type(sink), "courier_ready", False)) and "send" not in vars(sink)


class Courier:
    """Steps whose messages a helper process sends, one at a time; this process hands each
    outcome back to the steps (`poll`, `finish`).

    The helper is handed the message after the one it sends (`Send.then`, the next one due)
    and sends all of it but its final dot meanwhile; once the pass has marked the last one
    sent, the next is either that one ("go": only the dot and the server's answer are left)
    or another ("drop": the connection is closed mid-DATA, the server never takes it). So the
    server takes a message only after the one before is marked, as when the pass sends itself.

    Anything wrong with the helper (it cannot start, it dies) turns sending back in-process
    for the rest of the pass; a message out when it died is sent again here, the one resend a
    crash at that moment would cost."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._proc: subprocess.Popen | None = None
        self._broken = False
        self._steps: Steps | None = None  # the steps being sent, None when idle
        self._next: Send | None = None  # their next message, not handed out yet
        self._out: Send | None = None  # told to go, its outcome not read yet
        self._held: Send | None = None  # handed over to prepare, no go or drop said yet
        self._answer: tuple[str, Any] | None = None  # the answer about `_out`, read early

    @property
    def busy(self) -> bool:
        return self._steps is not None

    def warm_up(self) -> None:
        """Start the helper now (it imports and connects while the pass goes on). Without it
        the steps are sent here: a pass of one batch has nothing to overlap its sends with,
        and would only wait for a helper to start."""
        if self._proc is not None or self._broken:
            return
        try:
            # Unbuffered: `select` then sees every answer the helper has written.
            self._proc = start_child("mailbot.run.courier_lines", buffered=False)
            self._write(("setup", (self.app.sink, self.app.store.wal_file)))
        except (OSError, pickle.PicklingError, TypeError) as exc:
            self._give_up(exc)

    def start(self, steps: Steps) -> None:
        """Begin `steps`: their store work up to the first message happens here and now, and
        the message goes out (a poll is one message: waiting for the next poll to hand it out
        would cost one at each start)."""
        if self._steps is not None:
            raise RuntimeError("the courier is still sending the last steps")
        self._steps = steps
        self._advance(next(steps, None))
        if self._next is not None:
            self._hand_out()

    def poll(self) -> None:
        """Hand the outcome of the message out, if it has come, to the steps; tell the helper
        the next message. Never waits."""
        if self._steps is None:
            return
        if self._out is not None:
            if not self._answered():
                return
            self._advance(self._take(self._out))
        if self._next is not None:
            self._hand_out()

    def finish(self) -> None:
        """Send the rest of the steps, waiting for each (nothing is left to overlap them with)."""
        while self._steps is not None:
            if self._out is not None:
                self._advance(self._take(self._out))
            if self._next is not None:
                self._hand_out()

    def close(self) -> None:
        """Stop the helper. A message out is waited for and what came of it recorded; the steps
        go no further (their other messages stay queued in the outbox for the next pass)."""
        try:
            if self._steps is not None:
                steps = self._steps
                if self._out is not None:
                    self._advance(self._take(self._out))
                self._steps = self._next = None
                steps.close()
        finally:
            if self._proc is not None:
                stop_child(self._proc)
                self._proc = None

    # -- internals ---------------------------------------------------------------------------

    def _advance(self, job: Send | None) -> None:
        """The steps' next message (None: they are done, and a message held is dropped)."""
        self._next = job
        if job is None:
            self._steps = None
            if self._held is not None:
                self._held = None
                self._tell(("drop", None))

    def _hand_out(self) -> None:
        job, self._next = self._next, None
        assert job is not None
        if self._broken or self._proc is None:  # no helper (gone, or none worth starting)
            self._advance(self._record(self._send_here(job)))
            return
        held, self._held = self._held, None
        if held is not None and held.message_id == job.message_id:
            frames = [("go", None)]  # prepared already: the dot is all that is left
        else:
            frames = [("drop", None)] if held is not None else []
            frames += [("job", dataclasses.replace(job, then=None)), ("go", None)]
        if job.then is not None:  # the next one, to prepare meanwhile: in the same write
            frames.append(("job", job.then))
        try:
            self._write(*frames)
        except OSError as exc:  # it died before taking the go: nothing of it went out
            self._give_up(exc)
            self._advance(self._record(self._send_here(job)))
            return
        self._out = job
        self._held = job.then

    def _tell(self, frame: tuple[str, Any]) -> bool:
        """A frame the helper may miss: if it has died, the next answer says so."""
        if self._broken:
            return False
        try:
            self._write(frame)
        except OSError:
            return False
        return True

    def _write(self, *frames: tuple[str, Any]) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        send_frame(self._proc.stdin, *(pickle.dumps(f, protocol=_PICKLE) for f in frames))

    def _answered(self) -> bool:
        """Whether the answer about the message out has come (answers about messages dropped
        are read past)."""
        if self._answer is not None or self._broken or self._proc is None:
            return True  # an answer, or none will come (`_take` knows what to do)
        stdout = self._proc.stdout
        assert stdout is not None
        while select.select([stdout], [], [], 0)[0]:
            if not self._read() or self._answer is not None:
                return True  # the answer, or the helper is gone
        return False

    def _read(self) -> bool:
        """Read one answer; keep it unless it is about a dropped message. False: the helper is
        gone."""
        if self._proc is None or self._proc.stdout is None:
            self._give_up(RuntimeError("the courier is gone"))
            return False
        try:
            kind, detail = pickle.loads(receive_frame(self._proc.stdout))
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            self._give_up(exc)
            return False
        if kind != "dropped":
            self._answer = (kind, detail)
        return True

    def _take(self, job: Send) -> Send | None:
        """Wait for the helper's answer about `job`; hand it to the steps; their next message."""
        self._out = None
        while self._answer is None and not self._broken:
            self._read()
        answer, self._answer = self._answer, None
        if answer is None:
            # It died with the message out: the server may or may not have taken it. Sent
            # again here, with the same bytes and Message-ID: the one resend a crash costs.
            return self._record(self._send_here(job))
        kind, detail = answer
        if kind == "unsynced":  # the helper could not fsync the store: let the store say why
            self.app.store.sync()
            return self._record(self._send_here(job))
        if kind == "failed":
            return self._record((None, CourierFailed(detail)))
        return self._record((detail, None))

    def _send_here(self, job: Send) -> tuple[Outcome, BaseException | None]:
        try:
            job.go(self.app.sink, self.app.store.sync)
        except DELIVERY_OUTCOMES as exc:
            return exc, None
        except Exception as exc:
            return None, exc
        return None, None

    def _record(self, result: tuple[Outcome, BaseException | None]) -> Send | None:
        """Hand an outcome to the steps (an unexpected failure ends them); their next message."""
        steps = self._steps
        assert steps is not None
        outcome, failure = result
        try:
            if failure is not None:
                raise failure
            return next_send(steps, outcome)
        except BaseException:
            self._steps = self._next = None
            steps.close()
            raise

    def _give_up(self, exc: BaseException) -> None:
        if not self._broken:
            log.warning("event=courier_off error=%r: replies are sent in-process", str(exc))
        self._broken = True
        self._held = None
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                stop_child(proc)
            except OSError:
                pass


@dataclasses.dataclass
class Batch:
    """A batch whose replies are to go out: its mails handled so far, in order (`decided`),
    the claims on them (the pass's own list, held until the batch is filed), the reference of
    its first mail (for the report).

    Its replies go out in groups of GROUP mails as they are decided, not once the whole batch
    is: each reply goes while the pass decides the next mails, and at the pass's end only the
    last few are left to send. It is filed once it is `closed` (every mail of it decided) and
    every group is out; its copies for Sent are made then, all at once."""

    claimed: list[int]
    decided: list[int] = dataclasses.field(default_factory=list)
    reference: str | None = None
    closed: bool = False
    handed: int = 0  # how many of `decided` are in groups handed to the courier
    faulted: bool = False  # a delivery fault: nothing more of it goes out in this pass
    copies: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)

    GROUP = 20

    def add(self, rec: MailRecord) -> None:
        """One more of its mails handled: its replies may go out (the pass's next poll)."""
        if self.reference is None:
            self.reference = rec.reference
        self.decided.append(rec.id)

    def next_group(self) -> list[int]:
        """The next mails whose replies may go: GROUP of them, or the rest once it is closed."""
        left = len(self.decided) - self.handed
        if self.faulted or left == 0 or (left < self.GROUP and not self.closed):
            return []
        group = self.decided[self.handed:self.handed + self.GROUP]
        self.handed += len(group)
        return group

    @property
    def all_handed(self) -> bool:
        return self.closed and (self.faulted or self.handed == len(self.decided))


class Deliveries:
    """The pipeline's batches whose replies go out on the courier, oldest first, each filed
    once its replies are out.

    A pass opens each batch (`open`) with the claims on its mails, says of each mail once it
    is handled (`Batch.add`) and closes the batch once all are (`close`); between two mails it
    looks in (`poll`): the courier's answer is handed to the steps, the next reply handed
    out, the next group of decided mails begun; a closed batch whose replies are all out is
    filed, its claims let go, and the next batch's replies start. A batch whose replies are
    not all out when a second one is closed behind it is finished there and then; the pass's
    end finishes every one (`settle`). A fault of a delivery is the batch's alone, as when the
    pass sends itself: logged, counted in the report, and its mails stay for the next run."""

    WAITING = 1  # closed batches waiting behind the one going out

    def __init__(self, app: App, report: RunReport) -> None:
        self.app, self.report = app, report
        self.courier = Courier(app)
        self.overlaps = can_overlap(app)  # else the pass sends each batch itself, in turn
        self._batches: collections.deque[Batch] = collections.deque()

    def __enter__(self) -> Deliveries:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.settle()
            finally:
                self.courier.close()
            return
        # The pass is failing: the reply out is recorded, the others wait in the outbox.
        try:
            self.courier.close()
        except Exception as close_exc:
            log.error("event=delivery_stopped error=%r", str(close_exc))
        finally:
            batches, self._batches = self._batches, collections.deque()
            for batch in batches:
                let_go(self.app, batch.claimed)

    def open(self, claimed: list[int], *, more_to_come: bool) -> Batch:
        """A batch about to be decided, whose claims (`claimed`, the pass's list, which grows
        as its mails are recorded) are held here from now on until it is filed.
        `more_to_come`: the batch is full, so the courier is started now."""
        batch = Batch(claimed)
        self._batches.append(batch)
        if more_to_come:
            self.courier.warm_up()
        return batch

    def close(self, batch: Batch) -> None:
        """Every mail of `batch` is handled: the rest of its replies go, then it is filed."""
        batch.closed = True
        while sum(b.closed for b in self._batches) > 1 + self.WAITING:
            self._finish_oldest()
        self._go_on()

    def poll(self) -> None:
        """Between two mails: the courier's answer to the steps, the next reply out; a group
        done and the next one begun, a batch done filed. Never waits for the courier."""
        if not self._batches:
            return
        self._guard(self._batches[0], self.courier.poll)
        self._go_on()

    def settle(self) -> None:
        """Every batch: its last replies sent, waiting for each, then filed."""
        while self._batches:
            self._batches[0].closed = True  # a pass that stopped early: what it decided goes
            self._finish_oldest()

    def _go_on(self) -> None:
        """Begin the oldest batch's next group when the courier is free; file the oldest batch
        once its last group is out."""
        while self._batches and not self.courier.busy:
            batch = self._batches[0]
            group = batch.next_group()
            if group:
                self._start(batch, group)
                continue  # sending (or nothing to send: the next group at the next turn)
            if not batch.all_handed:
                return  # waiting for more of its mails to be decided
            self._file_oldest()

    def _finish_oldest(self) -> None:
        batch = self._batches[0]
        while True:
            if self.courier.busy:
                self._guard(batch, self.courier.finish)
            group = batch.next_group()
            if not group:
                break
            self._start(batch, group)
        self._file_oldest()

    def _start(self, batch: Batch, group: list[int]) -> None:
        """The group's replies due, claimed again, handed to the courier's steps."""
        if not self._guard(batch, lambda: self.courier.start(delivery_steps(
                self.app, self.report, *claim_due(self.app, mail_ids=group), batch.copies))):
            batch.faulted = True

    def _file_oldest(self) -> None:
        """Its replies are out (or stopped by a fault): their copies for Sent made, the mails
        whose answers are all out leave the inbox; the claims are let go."""
        batch = self._batches.popleft()
        try:
            if batch.copies:
                self._guard(batch, lambda: make_copies(self.app, batch.copies))
            if batch.decided:
                self._guard(batch, lambda: file_mails(self.app, batch.decided, self.report))
        finally:
            let_go(self.app, batch.claimed)

    def _guard(self, batch: Batch, step: Any) -> bool:
        """Run a step of a batch's delivery; a fault other than the store's is the batch's
        alone (its mails stay in the inbox; the next run finishes them). False after one."""
        try:
            step()
        except StoreError:
            raise  # a damaged or full store ends the pass; every mail stays where it is
        except Exception as exc:
            log.exception("batch of %d mails: %s", len(batch.decided), exc)
            self.report.errors.append(f"{len(batch.decided)} mails from {batch.reference}: "
                                      f"{exc}")
            batch.faulted = True
            return False
        return True
