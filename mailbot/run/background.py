"""A batch's sends, Sent copies and filing, done in a thread while the next batch is decided.

Deciding is mostly this process's own work; sending, marking sent (a synchronous disk write
each), copying to Sent and filing mostly wait for servers and the disk. Overlapping the two
changes no step of any single mail: a batch is handed over only once each of its mails' decision
is committed, and its thread sends, marks sent and files them in the order of
mailbot.run.pipeline, exactly as the pass would have in line. At most one batch is in flight:
handing over the next waits for the one before, so batches still go out in order.

Whatever the thread raises (a store fault, a crash the tests simulate) is raised again in the
pass at the next hand-over or at the end (`wait`), so nothing fails silently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("mailbot")


class BatchDelivery:
    """One background thread at a time finishing a decided batch."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self, finish: Callable[[], None]) -> None:
        """Wait for the batch before (raising what it raised), then run `finish` in a thread."""
        self.wait()

        def run() -> None:
            try:
                finish()
            except BaseException as exc:  # raised again in the pass by wait()
                self._failure = exc

        self._thread = threading.Thread(target=run, name="mailbot-deliver-batch")
        self._thread.start()

    def wait(self) -> None:
        """Until the batch in flight is finished; raises what its thread raised."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def join(self) -> None:
        """Until the batch in flight is finished, raising nothing: the pass is failing already
        with its own error, so what the thread met is logged instead."""
        try:
            self.wait()
        except BaseException as exc:
            log.error("event=batch_delivery_failed error=%r", str(exc), exc_info=exc)
