"""The courier's helper process: the SMTP connections that send a pass's replies while the
pass decides the next mails (mailbot.run.courier is the pass's side, and says why).

Started by the pass as `python -m mailbot.run.courier_lines`, once a pass has more than one
batch. It imports what sending needs: the sink, rebuilt from its settings, and of the store
only `mailbot.store.wal`, to fsync the WAL (no SQLAlchemy, no rules, no templates; about a
fifth of what the pass's side would import), so it is up and connected before the first
mails are decided (tests/test_courier.py checks what it imports).
"""

from __future__ import annotations

import collections
import pickle
import queue
import threading
from typing import Any, BinaryIO

from mailbot.run.child import child_streams, exit_at_once, receive_frame, send_frame
from mailbot.run.sending import DELIVERY_OUTCOMES, Send
from mailbot.store.wal import fsync_wal

_PICKLE = pickle.HIGHEST_PROTOCOL

CONNECTIONS = 2  # the message going out on one, the next one prepared on the other


class _Quiet:
    """Whether a message is going out (its dot sent, its answer not yet given to the pass).

    Why: the pass waits for that answer, and a message prepared meanwhile on the other
    connection competes with it for this process's GIL and for the SMTP server, which takes in
    the prepared message before it answers the dot. So a line prepares its next message only
    once no message is going; the pass decides a mail (milliseconds) between two answers, time
    enough to prepare the next one."""

    def __init__(self) -> None:
        self._going = 0
        self._changed = threading.Condition()

    def wait(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._going == 0)

    def going(self, delta: int) -> None:
        with self._changed:
            self._going += delta
            self._changed.notify_all()


class _Line:
    """One of the courier's SMTP connections, on a thread of its own: sends the messages it is
    given, each held before its final dot until its word comes."""

    def __init__(self, sink: Any, wal: str | None, answer: Any, quiet: _Quiet) -> None:
        self.sink, self.wal, self.answer, self.quiet = sink, wal, answer, quiet
        self.jobs: queue.SimpleQueue[tuple[Send, queue.SimpleQueue[str]] | None] = (
            queue.SimpleQueue())
        self.thread = threading.Thread(target=self._run, daemon=True, name="courier-line")
        self.thread.start()

    def _run(self) -> None:
        from mailbot.transport.smtp import Abandoned

        try:
            while (item := self.jobs.get()) is not None:
                job, words = item
                word: list[str] = []  # the pass's "go", "drop" or "end" for this job
                unsynced: list[str] = []
                going: list[bool] = []  # told to go: the other line waits for its answer
                self.quiet.wait()

                def hold(job: Send = job, words: queue.SimpleQueue[str] = words,
                         word: list[str] = word, unsynced: list[str] = unsynced,
                         going: list[bool] = going) -> bool:
                    word.append(words.get())
                    if word[0] != "go":
                        return False
                    self.quiet.going(+1)
                    going.append(True)
                    try:
                        if job.sync_first and self.wal is not None:
                            fsync_wal(self.wal)
                    except OSError as exc:
                        unsynced.append(str(exc))
                        return False
                    return True

                answer: tuple[str, Any]
                try:
                    self.sink.send(job.envelope_from, job.recipients, job.data, job.message_id,
                                   hold=hold)
                    answer = ("sent", None)
                except Abandoned:
                    answer = ("unsynced", unsynced[0]) if unsynced else ("dropped", None)
                except DELIVERY_OUTCOMES as exc:
                    answer = ("sent", exc)
                except Exception as exc:
                    answer = ("failed", f"{type(exc).__name__}: {exc}")
                if not word:  # it failed before its dot: the pass's word is still to come
                    word.append(words.get())
                    if word[0] != "go":
                        answer = ("dropped", None)
                try:
                    if word[0] == "end":
                        return
                    self.answer(answer)
                finally:
                    if going:
                        self.quiet.going(-1)
        finally:
            self.sink.close()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The courier: the sink and the store's WAL first; then, for each message handed over
    ("job"), all of it sent but its final dot, which waits for the pass's word: "go" (sync the
    WAL, send the dot) or "drop" (close the connection). Each answered ("sent", outcome),
    ("failed", text), ("unsynced", text) or ("dropped", None), until end of input.

    The messages take turns on CONNECTIONS connections, each on a thread of its own, so the
    next message is prepared while the one before goes (the pass tells at most one to go at a
    time, and hands over the next before that one's answer is back)."""
    try:
        _, (sink, wal) = pickle.loads(receive_frame(requests))
    except EOFError:
        return
    lock = threading.Lock()

    def answer(payload: tuple[str, Any]) -> None:
        try:
            frame = pickle.dumps(payload, protocol=_PICKLE)
        except Exception:  # an outcome that does not pickle: its class and text
            frame = pickle.dumps((payload[0], type(payload[1])(str(payload[1]))),
                                 protocol=_PICKLE)
        with lock:
            send_frame(answers, frame)

    quiet = _Quiet()
    lines = [_Line(sink if n == 0 else pickle.loads(pickle.dumps(sink)), wal, answer, quiet)
             for n in range(CONNECTIONS)]
    waiting: collections.deque[queue.SimpleQueue[str]] = collections.deque()  # no word yet
    turn = 0
    try:
        while True:
            try:
                kind, job = pickle.loads(receive_frame(requests))
            except EOFError:
                return
            if kind == "job":
                words: queue.SimpleQueue[str] = queue.SimpleQueue()
                waiting.append(words)
                lines[turn].jobs.put((job, words))
                turn = (turn + 1) % len(lines)
            else:  # "go" or "drop", for the oldest message without its word
                waiting.popleft().put(kind)
    finally:
        for words in waiting:
            words.put("end")
        for line in lines:
            line.jobs.put(None)
        for line in lines:
            line.thread.join(10)


if __name__ == "__main__":
    serve(*child_streams())
    exit_at_once()
