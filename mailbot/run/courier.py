"""A batch's replies go out while the next batch is decided.

Why: sending a reply is mostly waiting, for the SMTP server to take MAIL, RCPT, DATA and the
message, one round trip after another (about 1.5 ms a reply on loopback, tens of milliseconds
against a real provider). Done in turn with the decisions, a pass waits for every one of them.
The courier is a helper process (mailbot.run.child) holding its own SMTP connection: it sends
what it is handed, one message at a time, and answers what came of it. A process rather than a
thread, because a thread would need this process's GIL for each of those round trips while the
pass is busy deciding, and would wait for it every time.

Everything that touches the store or the mailbox (claims, "sent" marks, copies for Sent,
filing) stays in the pass, in the order `deliver.delivery_steps` gives it, which hands out
the next message only once the last one is marked: at most one accepted reply is ever
unmarked, as when the pass sends them itself. The fsync that puts the last mark on the disk is
the courier's, before it sends the next message (`Send.sync_first`).

`Deliveries` is the pipeline's side: the batch whose replies are out, which the pass looks in
on between two mails (`poll`) and finishes before the next batch's replies go, or the pass
ends (`settle`). A pass of one batch never starts a courier: there is nothing to overlap.
"""

from __future__ import annotations

import logging
import pickle
import select
import subprocess
from collections.abc import Generator, Sequence
from typing import Any, BinaryIO

from mailbot.errors import StoreError
from mailbot.run.app import App, RunReport
from mailbot.run.child import child_streams, receive_frame, send_frame, start_child, stop_child
from mailbot.run.claims import let_go
from mailbot.run.deliver import (
    DELIVERY_OUTCOMES,
    Outcome,
    Send,
    claim_due,
    delivery_steps,
    next_send,
    send_each,
)
from mailbot.run.filing import file_mails
from mailbot.store.wal import fsync_wal

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
    outcome back to the steps (`poll`, `finish`). Anything wrong with the helper (it cannot
    start, it dies) turns sending back in-process for the rest of the pass; a message out when
    it died is sent again here, the one resend a crash at that moment would cost."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._proc: subprocess.Popen | None = None
        self._broken = False
        self._steps: Steps | None = None  # the steps being sent, None when idle
        self._next: Send | None = None  # their next message, not handed out yet
        self._out: Send | None = None  # handed to the helper, its outcome not read yet

    @property
    def busy(self) -> bool:
        return self._steps is not None

    def warm_up(self) -> None:
        """Start the helper now (it imports and connects while the pass goes on)."""
        if self._proc is not None or self._broken:
            return
        try:
            self._proc = start_child("mailbot.run.courier")
            assert self._proc.stdin is not None
            send_frame(self._proc.stdin, pickle.dumps(
                (self.app.sink, self.app.store.wal_file), protocol=_PICKLE))
        except (OSError, pickle.PicklingError, TypeError) as exc:
            self._give_up(exc)

    def start(self, steps: Steps) -> None:
        """Begin `steps`: their store work up to the first message happens here and now; the
        message goes out at the next `poll`."""
        if self._steps is not None:
            raise RuntimeError("the courier is still sending the last steps")
        self._steps = steps
        self._advance(next(steps, None))

    def poll(self) -> None:
        """Hand the outcome of the message out, if it has come, to the steps; hand the helper
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
        """Wait for the message out, then send the rest of the steps here (nothing is left to
        overlap them with)."""
        if self._steps is None:
            return
        steps = self._steps
        if self._out is not None:
            self._advance(self._take(self._out))
        job, self._steps, self._next = self._next, None, None
        if job is not None:
            send_each(self.app, steps, job)

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
        """The steps' next message (None: they are done)."""
        self._next = job
        if job is None:
            self._steps = None

    def _hand_out(self) -> None:
        job, self._next = self._next, None
        assert job is not None
        if self._proc is None:
            self.warm_up()
        if self._broken or self._proc is None:
            self._advance(self._record(self._send_here(job)))  # the helper is gone: here
            return
        try:
            assert self._proc.stdin is not None
            send_frame(self._proc.stdin, pickle.dumps(job, protocol=_PICKLE))
        except OSError as exc:  # it died before taking it: nothing of it went out
            self._give_up(exc)
            self._advance(self._record(self._send_here(job)))
            return
        self._out = job

    def _answered(self) -> bool:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], 0)
        return bool(ready)

    def _take(self, job: Send) -> Send | None:
        """Wait for the helper's answer about `job`; hand it to the steps; their next message."""
        self._out = None
        try:
            assert self._proc is not None and self._proc.stdout is not None
            kind, detail = pickle.loads(receive_frame(self._proc.stdout))
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            # It died with the message out: the server may or may not have taken it. Sent
            # again here, with the same bytes and Message-ID: the one resend a crash costs.
            self._give_up(exc)
            return self._record(self._send_here(job))
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
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                stop_child(proc)
            except OSError:
                pass


class Deliveries:
    """The pipeline's batch whose replies are out on the courier, until it is filed.

    A pass hands each decided batch over (`send`), with the claims on its mails; looks in
    between two mails of the next batch (`poll`); and, once that batch is decided, finishes
    the one out (`settle`: its last replies, then the mails filed, then the claims let go)
    before the next goes out. A fault of a delivery is the batch's alone, as when the pass
    sends itself: logged, counted in the report, and its mails stay for the next run."""

    def __init__(self, app: App, report: RunReport) -> None:
        self.app, self.report = app, report
        self.courier = Courier(app)
        self.overlaps = can_overlap(app)  # else the pass sends each batch itself, in turn
        self._out: tuple[list[int], list[int], str | None] | None = None  # ids, claims, ref

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
            out, self._out = self._out, None
            if out is not None:
                let_go(self.app, out[1])

    def send(self, mail_ids: Sequence[int], claimed: list[int], reference: str | None,
             *, more_to_come: bool) -> None:
        """The replies of these decided mails go out while the next batch is decided; their
        claims are held here until they are filed. `more_to_come`: the batch was full, so the
        courier is started now, to be ready for the next one."""
        self.settle()
        self._out = (list(mail_ids), claimed, reference)
        if more_to_come:
            self.courier.warm_up()
        self._guard(lambda: self.courier.start(
            delivery_steps(self.app, self.report, *claim_due(self.app, mail_ids=mail_ids))))

    def poll(self) -> None:
        if self._out is not None and self.courier.busy:
            self._guard(self.courier.poll)

    def settle(self) -> None:
        """The batch out: its last replies sent here, then its mails filed, its claims let go."""
        if self._out is None:
            return
        mail_ids, claimed, _ = self._out
        try:
            if self._guard(self.courier.finish):
                self._guard(lambda: file_mails(self.app, mail_ids, self.report))
        finally:
            self._out = None
            let_go(self.app, claimed)

    def _guard(self, step: Any) -> bool:
        """Run a step of the batch out; a fault other than the store's is the batch's alone
        (its mails stay in the inbox; the next run finishes them). False after a fault."""
        try:
            step()
        except StoreError:
            raise  # a damaged or full store ends the pass; every mail stays where it is
        except Exception as exc:
            count, reference = (len(self._out[0]), self._out[2]) if self._out else (0, None)
            log.exception("batch of %d mails: %s", count, exc)
            self.report.errors.append(f"{count} mails from {reference}: {exc}")
            return False
        return True


# -- the helper process ---------------------------------------------------------------------------

def _courier(requests: BinaryIO, answers: BinaryIO) -> None:
    """The courier: the sink and the store's WAL first, then one message after another until
    end of input; each answered ("sent", outcome) or ("failed", text) or ("unsynced", text)."""
    try:
        sink, wal = pickle.loads(receive_frame(requests))
    except EOFError:
        return
    try:
        while True:
            try:
                job: Send = pickle.loads(receive_frame(requests))
            except EOFError:
                return
            answer: tuple[str, Any]
            try:
                if job.sync_first and wal is not None:
                    fsync_wal(wal)
            except OSError as exc:
                answer = ("unsynced", str(exc))
            else:
                try:
                    sink.send(job.envelope_from, job.recipients, job.data, job.message_id)
                    answer = ("sent", None)
                except DELIVERY_OUTCOMES as exc:
                    answer = ("sent", exc)
                except Exception as exc:
                    answer = ("failed", f"{type(exc).__name__}: {exc}")
            try:
                payload = pickle.dumps(answer, protocol=_PICKLE)
            except Exception:  # an outcome that does not pickle: its class and text
                outcome = answer[1]
                payload = pickle.dumps((answer[0], type(outcome)(str(outcome))),
                                       protocol=_PICKLE)
            send_frame(answers, payload)
    finally:
        sink.close()


if __name__ == "__main__":
    _courier(*child_streams())
