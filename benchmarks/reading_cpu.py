"""The CPU one mail's reading costs, against mail-parser + openpyxl on the same mails.

A script, not a test. In a pass the read-ahead workers (mailbot/run/readahead.py) read mails on
the machine's second core while the main process and the servers use the first; on a 2-core
machine the pass is CPU-bound, so what reading costs beyond what no implementation can avoid
is what this measures. The mails are benchmarks/imap_throughput.py's (`make_dataset`: a fifth
with an .xlsx list, the rest plain, Outlook, Gmail and HTML-only Outlook requests).

- ``floor``: mail-parser `parse_from_bytes` of every mail + openpyxl (read-only) of every .xlsx
  attachment, rows iterated, as benchmarks/honest_floor.py's `measure_floor` does after its
  fetch;
- ``reading``: `mailbot.read.extract.read_mail` of every mail with the shipped rules, the
  default [limits], our address and reference prefix, exactly as the read-ahead worker calls it.

Both are CPU time of this process (time.process_time), warmed up on one mail first, and run
alternately, mail by mail, --rounds times (the machine may be shared: the ratio of a round
compares the two on the same mails at the same moments). Printed: each round's figures, the
mean and spread of each, and the ratio reading / floor, overall and per kind of mail. There is
no target to miss: the run exits 0, non-zero only when a measurement itself breaks.

Run: `PYTHONPATH=. .venv/bin/python benchmarks/reading_cpu.py [--mails N] [--rounds N]
[--json]`.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests", ROOT / "benchmarks"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from honest_floor import read_spreadsheets  # noqa: E402
from imap_throughput import KINDS, OUR_ADDRESS, make_dataset  # noqa: E402

from mailbot.config import BotConfig, LimitsConfig  # noqa: E402
from mailbot.ruleset import load_rules  # noqa: E402
from mailbot.shipped import shipped  # noqa: E402


def floor_one(data: bytes) -> None:
    """What honest_floor.measure_floor does with one fetched mail."""
    import mailparser

    read_spreadsheets(mailparser.parse_from_bytes(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from mailbot.read.extract import read_mail

    logging.getLogger("mailparser").setLevel(logging.CRITICAL)  # as the worker does
    datas = [mail.data for mail in make_dataset(args.mails).mails]
    kinds = [KINDS[number % len(KINDS)] for number in range(len(datas))]
    rules, limits = load_rules(shipped("rules")), LimitsConfig()
    own, prefix = (OUR_ADDRESS,), BotConfig.reference_prefix

    def reading_one(data: bytes) -> None:
        read_mail(data, rules, limits, own, reference_prefix=prefix)

    floor_one(datas[0])
    reading_one(datas[0])
    rounds: list[dict[str, float]] = []
    by_kind: dict[str, collections.Counter[str]] = {
        "floor": collections.Counter(), "reading": collections.Counter()}
    for number in range(args.rounds):
        figures = {"floor": 0.0, "reading": 0.0}
        order = (("floor", floor_one), ("reading", reading_one))
        for data, kind in zip(datas, kinds, strict=True):
            # Mail by mail, the first one first in even rounds and second in odd ones: a load
            # that comes and goes on a shared machine weighs on both alike.
            for name, one in order if number % 2 == 0 else order[::-1]:
                started = time.process_time()
                one(data)
                spent = time.process_time() - started
                figures[name] += spent
                by_kind[name][kind] += spent
        figures["ratio"] = figures["reading"] / figures["floor"]
        rounds.append(figures)

    def summary(name: str) -> dict[str, float]:
        values = [r[name] for r in rounds]
        return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}

    result: dict[str, Any] = {
        "mails": len(datas), "rounds": rounds,
        "floor_s": summary("floor"), "reading_s": summary("reading"),
        "ratio": summary("ratio"),
        "per_kind_ratio": {k: by_kind["reading"][k] / by_kind["floor"][k]
                           for k in dict.fromkeys(kinds)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"reading CPU, {len(datas)} mails, {args.rounds} alternating rounds")
    for number, r in enumerate(rounds, start=1):
        print(f"  round {number}: floor {r['floor'] * 1000:7.0f} ms   reading "
              f"{r['reading'] * 1000:7.0f} ms   ratio {r['ratio']:.2f}")
    for name in ("floor", "reading"):
        s = result[f"{name}_s"]
        print(f"  {name:8s} mean {s['mean'] * 1000:7.0f} ms  ({s['min'] * 1000:.0f}-"
              f"{s['max'] * 1000:.0f}); {s['mean'] / len(datas) * 1000:.2f} ms a mail")
    for kind, ratio in result["per_kind_ratio"].items():
        print(f"  {kind:14s} reading / floor {ratio:.2f}")
    r = result["ratio"]
    print(f"reading / floor (mail-parser + openpyxl): {r['mean']:.2f} ({r['min']:.2f}-"
          f"{r['max']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
