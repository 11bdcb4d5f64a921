"""The registry import's preview and commit over big files: linear, and how much the store adds
to reading the file (issue 12, §3: "import a registry ... with a preview").

A script, not a test: it prints its figures and exits 0 even when a target is missed. For each
size (default 10,000 and 50,000 rows), on a fresh SQLite store that already holds the same
serials (a tenth of them with another company, so the preview finds changes):

- floor: reading and checking the CSV alone (mailbot.ops.imports.check_registry);
- preview: the same plus comparing every row with the store (what `--dry-run` and the console
  show);
- commit: the preview planned again in a transaction, and the changes written.

Figures: seconds, microseconds per row, preview / floor (what the store costs on top of the
reading), and the largest size's per-row preview cost over the smallest's. Targets: the
largest preview < 10 s, per-row growth <= 1.3x.

Run: `.venv/bin/python benchmarks/import_preview.py [--sizes 10000,50000] [--json]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mailbot.ops import import_preview as engine  # noqa: E402
from mailbot.ops.imports import check_registry  # noqa: E402
from mailbot.ruleset import load_rules  # noqa: E402
from mailbot.store import Store  # noqa: E402

HEADER = "serial,system,company,contact_email,purchase_date,modality,support_until,users\n"
SYSTEMS = ("CONTPAQ i Bancos", "Contabilidad", "Nóminas", "Aspel FACTURE")
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def serial(n: int) -> str:
    digits = []
    for _ in range(12):
        n, d = divmod(n, len(ALPHABET))
        digits.append(ALPHABET[d])
    text = "SERI" + "".join(digits)
    return "-".join(text[i:i + 4] for i in range(0, 16, 4))


def registry(rows: int, changed_every: int = 0) -> bytes:
    lines = [HEADER]
    for n in range(rows):
        company = f"Empresa {n} SA" + (" (nueva)" if changed_every and n % changed_every == 0
                                       else "")
        lines.append(f"{serial(n)},{SYSTEMS[n % 4]},{company},c{n}@example.mx,2012-01-01,"
                     f"fisico,,{n % 9 + 1}\n")
    return "".join(lines).encode("utf-8")


def measure(size: int, rules) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as work:
        store = Store(f"sqlite:///{Path(work) / 'mailbot.db'}")
        store.migrate()
        now = dt.datetime(2026, 12, 1)
        engine.commit(store, rules, engine.REGISTRY, "seed.csv", registry(size), now=now)
        payload = registry(size, changed_every=10)
        started = time.perf_counter()
        check_registry("registro.csv", payload, rules.catalogue)
        floor = time.perf_counter() - started
        started = time.perf_counter()
        shown = engine.preview(store, rules, engine.REGISTRY, "registro.csv", payload)
        preview = time.perf_counter() - started
        started = time.perf_counter()
        engine.commit(store, rules, engine.REGISTRY, "registro.csv", payload,
                      expected=shown.digest, now=now)
        commit = time.perf_counter() - started
        store.close()
    assert shown.counts()["change"] == (size + 9) // 10, shown.counts()
    return {"rows": size, "floor_s": floor, "preview_s": preview, "commit_s": commit,
            "preview_us_per_row": preview / size * 1e6, "ratio_to_floor": preview / floor}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rules = load_rules(ROOT / "rules")
    results = [measure(int(s), rules) for s in args.sizes.split(",")]
    growth = results[-1]["preview_us_per_row"] / results[0]["preview_us_per_row"]
    largest = results[-1]["preview_s"]
    verdict = {"largest_preview_under_10s": largest < 10, "growth_at_most_1.3x": growth <= 1.3}
    if args.json:
        print(json.dumps({"results": results, "growth": growth, "targets": verdict}))
        return 0
    for r in results:
        print(f"{r['rows']:>7} rows: floor (read+check) {r['floor_s']:.2f} s, preview "
              f"{r['preview_s']:.2f} s ({r['preview_us_per_row']:.0f} us/row, "
              f"{r['ratio_to_floor']:.2f}x floor), commit {r['commit_s']:.2f} s")
    print(f"largest preview {largest:.2f} s (target < 10 s): "
          f"{'PASS' if verdict['largest_preview_under_10s'] else 'MISS'}")
    print(f"per-row growth {growth:.2f}x (target <= 1.3x): "
          f"{'PASS' if verdict['growth_at_most_1.3x'] else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
