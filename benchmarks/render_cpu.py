"""CPU per reply of the sandboxed renderer against plain Jinja on the same templates.

Why: rendering a reply was the largest single cost of the main process in a pass (at 520c45f,
0.6-1.0 ms of CPU of the 4.3-5.8 ms per mail of main_cpu.py); a third of it was the sandbox's
own work per call, attribute and printed value, not the templates'. This measures that part alone,
steadily, and checks that the sandbox changes no byte. One run:

1. builds every sample context of every public template from rules/ (`sample_contexts`, the
   data `templates check` renders) and, with --keys-issued, weights them as a pass does: in
   main_cpu.py's 1,000 mails every reply is a keys_issued one;
2. FLOOR: a plain `jinja2.Environment` over templates/ with the same options and filters (no
   sandbox, no step, time or size budget) renders the text and HTML part of each, plus the
   same tidying of the text part: what any Jinja renderer of these templates pays;
3. RENDER: `Renderer.render` of the same, asserting the same text and HTML as the floor;
4. prints CPU microseconds per reply (best of --rounds, after one warm-up round that compiles)
   and the ratio render / floor.

Measured on a busy 2-core machine, three runs alternated: at 520c45f (before the render
branch) the ratio was 1.28-1.40 (all samples; 211-219 us per reply against a floor of 153-170)
and 1.28-1.33 with --keys-issued (346-377 us against 269-284); with the render branch 0.85-0.87
(one run 1.22; 124-130 us against 143-152) and 0.76 (204-213 us against 268-280): the sandbox
now costs less than plain Jinja (printing, dict attributes and globals are cheaper than Jinja's
own), with its budget kept. In the loaded process (main_cpu.py) a reply costs about twice what
this prints: the caches are cold after the SQL of each mail.

Run: `.venv/bin/python benchmarks/render_cpu.py [--rounds N] [--keys-issued]`; exit 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jinja2  # noqa: E402

from mailbot.answer.filters import FILTERS  # noqa: E402
from mailbot.answer.render import HTML_SUFFIX, TEXT_SUFFIX, Renderer, tidy_text  # noqa: E402
from mailbot.answer.samples import sample_contexts  # noqa: E402
from mailbot.ruleset import load_rules  # noqa: E402

TEMPLATES = ROOT / "templates"


def plain_environment(*, html: bool) -> jinja2.Environment:
    """make_environment's options and filters without the sandbox (the floor)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES), encoding="utf-8"),
        undefined=jinja2.StrictUndefined, autoescape=html, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=True, auto_reload=False)
    env.filters.update(FILTERS)
    return env


def cases(keys_issued: bool) -> list[tuple[str, dict[str, Any], bool]]:
    """(template, context, has an HTML part) of every sample, or keys_issued's only."""
    rules = load_rules(ROOT / "rules")
    names = ["keys_issued"] if keys_issued else Renderer(TEMPLATES).names()
    return [(name, context, (TEMPLATES / (name + HTML_SUFFIX)).is_file())
            for name in names for context in sample_contexts(name, rules).values()]


def best_cpu(render: Any, work: list[tuple[str, dict[str, Any], bool]], rounds: int) -> float:
    """Best CPU seconds of one round over `work` (after one warm-up round)."""
    for name, context, html in work:
        render(name, context, html)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for name, context, html in work:
            render(name, context, html)
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--keys-issued", action="store_true",
                    help="only keys_issued's samples, the reply of every mail in main_cpu.py")
    args = ap.parse_args(argv)
    work = cases(args.keys_issued)
    text_env, html_env = plain_environment(html=False), plain_environment(html=True)
    renderer = Renderer(TEMPLATES)

    def floor(name: str, context: dict[str, Any], html: bool) -> tuple[str, str | None]:
        text = tidy_text(text_env.get_template(name + TEXT_SUFFIX).render(context))
        return text, html_env.get_template(name + HTML_SUFFIX).render(context) if html else None

    def sandboxed(name: str, context: dict[str, Any], _html: bool) -> tuple[str, str | None]:
        rendered = renderer.render(name, context)
        return rendered.text, rendered.html

    for name, context, html in work:
        if floor(name, context, html) != sandboxed(name, context, html):
            print(f"  PROBLEM: {name}: the sandbox renders other bytes than plain Jinja")
            return 0
    floor_cpu = best_cpu(floor, work, args.rounds)
    render_cpu = best_cpu(sandboxed, work, args.rounds)
    n = len(work)
    print(f"mailbot render CPU: {n} replies ({len({w[0] for w in work})} templates, text + HTML "
          f"parts), best of {args.rounds} rounds")
    print(f"  floor (plain jinja2.Environment + tidy_text, same output): "
          f"{1e6 * floor_cpu / n:.0f} us CPU per reply")
    print(f"  render (Renderer.render: sandbox, budget, tidy_text): "
          f"{1e6 * render_cpu / n:.0f} us CPU per reply")
    print(f"  ratio render / floor: {render_cpu / floor_cpu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
