"""The new mails of a group are recorded in one commit, and each attempt is still counted, and
committed, before its mail is read (mailbot.run.record_group; issue 10 §3)."""

from __future__ import annotations

import sqlalchemy as sa
from test_pipeline import make_app

from mailbot.run.pipeline import run_once
from mailbot.run.record import LOOK_AGAIN
from mailbot.store.database import mails


class Crash(BaseException):
    """Stands in for the process dying at a hook point."""


def attempts(app) -> list[tuple[str, int]]:
    with app.store.transaction() as conn:
        return [(r.status, r.attempts) for r in conn.execute(
            sa.select(mails.c.status, mails.c.attempts).order_by(mails.c.id))]


def crash_at(app, point: str, count: int, seen: list) -> None:
    calls = {"n": 0}

    def hook(name: str) -> None:
        if name == point:
            calls["n"] += 1
            if calls["n"] == count:
                seen.append(attempts(app))
                raise Crash(name)

    app.hook = hook


def test_a_group_is_recorded_in_one_commit_with_only_its_first_attempt_counted(tmp_path):
    app, _ = make_app(tmp_path)
    seen: list = []
    crash_at(app, "after_fetch", 1, seen)  # the first mail is about to be read
    try:
        run_once(app)
    except Crash:
        pass
    recorded = seen[0]
    assert len(recorded) == LOOK_AGAIN  # the whole group, before the first mail is read
    received = [n for status, n in recorded if status == "received"]
    assert received[0] == 1 and set(received[1:]) == {0}  # none of the others blamed
    assert attempts(app) == recorded  # and so it stays after the crash


def test_the_next_attempt_is_counted_in_the_commit_of_the_decision_before_it(tmp_path):
    app, _ = make_app(tmp_path)
    seen: list = []
    crash_at(app, "after_fetch", 2, seen)  # the first mail decided, the second about to be read
    try:
        run_once(app)
    except Crash:
        pass
    states = seen[0]
    assert states[0] == ("decided", 1)
    assert states[1] == ("received", 1)  # counted with the first one's decision
    assert {n for status, n in states[2:] if status == "received"} == {0}


def test_after_a_failed_decision_the_next_mail_counts_its_own_attempt(tmp_path):
    app, _ = make_app(tmp_path)
    seen: list = []
    calls = {"decisions": 0, "fetches": 0}

    def hook(name: str) -> None:
        if name == "after_key_assigned":
            calls["decisions"] += 1
            if calls["decisions"] == 1:
                raise ValueError("the first decision fails")  # rolled back, mail left waiting
        if name == "after_fetch":
            calls["fetches"] += 1
            if calls["fetches"] == 2:
                seen.append(attempts(app))
                raise Crash(name)

    app.hook = hook
    try:
        run_once(app)
    except Crash:
        pass
    states = seen[0]
    assert states[0] == ("received", 1)  # its decision rolled back: one attempt, waiting
    assert states[1] == ("received", 1)  # counted in a commit of its own, before its read
    assert {n for status, n in states[2:] if status == "received"} == {0}

    app.hook = lambda name: None
    report = run_once(app)  # the next pass finishes every mail, none quarantined
    assert report.errors == []
    assert {status for status, _ in attempts(app)} <= {"done", "duplicate"}
