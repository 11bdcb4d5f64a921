"""`mailbot run`: the long-running service.

New mail is picked up within seconds through IMAP IDLE where the source supports it; an
APScheduler interval job polls as the fallback. Passes never overlap. SIGTERM/SIGINT let the
mail in hand finish, then the process exits cleanly.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from mailbot.errors import StoreError
from mailbot.run.alerts import send_alerts
from mailbot.run.app import App
from mailbot.run.pipeline import run_once

log = logging.getLogger("mailbot.run.service")


class Runner:
    """Runs passes one at a time; remembers an unreachable mailbox so it is alerted once, and a
    store that cannot be written (a full disk, a damaged file) so it is logged once."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.unreachable = False
        self.store_fault: str | None = None

    def run_pass(self, *, wait: bool = False) -> None:
        """One pass. The schedule skips a tick while a pass runs (wait=False); a wake-up from
        IDLE waits for the running pass and then makes its own, so new mail is never left for
        the next poll."""
        if not self.lock.acquire(blocking=wait):
            return  # a pass is already running: never overlap
        try:
            report = run_once(self.app)
            if self.unreachable:
                log.info("event=mailbox_reachable_again source=%s", self.app.source.name)
            if self.store_fault:
                log.info("event=store_writable_again")
            self.unreachable = False
            self.store_fault = None
            if report.seen or report.sent:
                log.info("event=pass seen=%d decided=%d duplicates=%d sent=%d filed=%d failed=%d",
                         report.seen, report.decided, report.duplicates, report.sent,
                         report.filed, report.failed)
        except StoreError as exc:
            self._store_failed(exc)
        except Exception as exc:
            self._unreachable(exc)
        finally:
            self.lock.release()

    def _store_failed(self, exc: StoreError) -> None:
        """Nothing was saved and every mail is where it was: log the fix once (no alert mail:
        it would go through the same store) and try again each pass, so freeing the disk is
        all it takes."""
        if self.store_fault != str(exc):
            log.error("event=store_unavailable error=%r", str(exc))
        self.store_fault = str(exc)

    def _unreachable(self, exc: Exception) -> None:
        log.error("event=pass_failed error=%r", str(exc))
        if self.unreachable:
            return  # alerted already; keep trying quietly
        self.unreachable = True
        try:
            with self.app.store.transaction() as conn:
                self.app.store.log_event(conn, "alert", title="Buzón inaccesible",
                                         detail=f"{self.app.source.name}: {exc}")
        except StoreError as store_exc:
            self._store_failed(store_exc)
            return
        try:
            send_alerts(self.app)
            from mailbot.run.app import RunReport
            from mailbot.run.deliver import deliver_due

            deliver_due(self.app, RunReport())
        except Exception as alert_exc:  # the SMTP server may be down too; the alert waits
            log.error("event=alert_not_sent error=%r", str(alert_exc))


def serve(app: App, *, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    runner = Runner(app)
    interval = max(app.config.imap.poll_interval_seconds, 1)
    scheduler = BackgroundScheduler(timezone=dt.UTC)
    scheduler.add_job(runner.run_pass, "interval", seconds=interval, max_instances=1,
                      coalesce=True, next_run_time=dt.datetime.now(dt.UTC),
                      id="poll")

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("event=stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    scheduler.start()
    log.info("event=started source=%s poll_seconds=%d", app.source.name, interval)
    wait = getattr(app.source, "wait_for_mail", None)
    use_idle = callable(wait) and app.config.imap.idle
    try:
        while not stop.is_set():
            if use_idle:
                try:
                    if wait(timeout=2.0):
                        runner.run_pass(wait=True)
                except Exception as exc:  # reconnects happen in the source; the poll goes on
                    log.warning("event=idle_failed error=%r", str(exc))
                    stop.wait(5)
            else:
                stop.wait(1)
    finally:
        scheduler.shutdown(wait=True)  # lets the pass in hand finish
        log.info("event=stopped")
    return 0
