"""`mailbot doctor`: every part checked in turn, each fault named with its fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mailbot.config import Config
from mailbot.errors import MailbotError, RulesError

Check = tuple[bool, str]


def _attempt(label: str, action: Callable[[], list[str] | str],
             ok_text: str = "reachable and usable") -> Iterator[Check]:
    try:
        result = action()
    except MailbotError as exc:
        yield False, f"{label}: {exc}"
        return
    except Exception as exc:  # a server check must report, never crash the doctor
        yield False, f"{label}: {type(exc).__name__}: {exc}"
        return
    if isinstance(result, str):
        yield True, f"{label}: {result}"
    elif result:
        for fault in result:
            yield False, f"{label}: {fault}"
    else:
        yield True, f"{label}: {ok_text}"


def run_checks(config: Config) -> Iterator[Check]:
    from mailbot.run.wiring import open_renderer, open_rules, open_sink, open_source, open_store

    yield True, f"configuration: {config.path or 'embedded defaults (no config file)'}"

    def rules() -> list[str] | str:
        try:
            r = open_rules(config)
        except RulesError as exc:  # every problem its own fault line, as `rules check` prints
            return [str(p) for p in exc.problems]
        return f"{r.directory}: {len(r.kinds)} kinds, {len(r.catalogue.systems)} systems"

    def templates() -> list[str]:
        renderer = open_renderer(config)
        try:
            rules = open_rules(config)  # samples carry the rules' prices
        except RulesError:
            return ["not rendered: the samples are built from the rules, which do not load "
                    "(see above)"]
        return renderer.check(rules)

    def store() -> str:
        s = open_store(config)
        try:
            with s.transaction() as conn:
                counts = s.pool_counts(conn)
            free = sum(f for f, _ in counts.values())
            return f"{s.engine.url.render_as_string(hide_password=True)}: schema up to date, " \
                   f"{free} free key(s) in the pool"
        finally:
            s.close()

    def source() -> list[str] | str:
        src = open_source(config)
        try:
            check = getattr(src, "check", None)
            return check() if callable(check) else f"{src.name}: ready"
        finally:
            src.close()

    def sink() -> list[str]:
        snk = open_sink(config)
        try:
            check = getattr(snk, "check", None)
            return check() if callable(check) else []
        finally:
            snk.close()

    yield from _attempt("rules", rules)
    yield from _attempt("templates", templates, "every template renders with sample data")
    yield from _attempt("store", store)
    yield from _attempt(f"source ({config.source.type})", source)
    yield from _attempt(f"sink ({config.sink.type})", sink)
    if not config.bot.operators:
        yield False, ("operators: no address in [mailbot] operators; alerts (review, empty key "
                      "pool, delivery failures) reach nobody. Fix: add operators = [\"...\"]")
    else:
        yield True, f"operators: {', '.join(config.bot.operators)}"
