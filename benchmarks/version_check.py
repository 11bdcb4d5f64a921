"""What a pass pays to notice an edited rules or templates folder (issue 12 §2).

A script, not a test: it prints each figure, its target, the ratio to a floor measured in the
same run, and PASS/MISS, and exits 0 even on a miss (non-zero only when the run itself breaks).
On copies of the shipped rules/ and templates/ and a fresh SQLite store:

- FLOOR: one `os.stat` of every versioned file of both folders (what any look at the files
  costs on this machine now);
- `versions.refresh` with nothing changed, what every pass pays (target < 5 ms, median of
  `--runs`);
- `versions.refresh` after a price edit: read, hash, `check_rules`, every template rendered
  with every sample against the new rules, the version recorded (target < 3 s: once per edit);
- the same after an invalid edit: refused, the last good version kept, the alert written
  (target < 3 s).

Run: `.venv/bin/python benchmarks/version_check.py [--runs N]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot import config as config_module  # noqa: E402
from mailbot.run import versions  # noqa: E402
from mailbot.run.wiring import open_app  # noqa: E402

TARGETS = {"unchanged": 0.005, "valid_edit": 3.0, "invalid_edit": 3.0}  # seconds


def floor(directories: list[tuple[Path, str]], runs: int) -> float:
    paths = [full for directory, suffix in directories
             for _, full in versions._paths(directory, suffix)]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for path in paths:
            os.stat(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise RuntimeError(f"{path}: {old!r} not found")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="refreshes with nothing changed")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mailbot-versions-"))
    try:
        shutil.copytree(ROOT / "rules", work / "rules")
        shutil.copytree(ROOT / "templates", work / "templates")
        (work / "config.toml").write_text(
            '[mailbot]\naddress = "claves@example.com"\nrules_dir = "rules"\n'
            'templates_dir = "templates"\n[store]\nurl = "sqlite:///mailbot.db"\n',
            encoding="utf-8")
        app = open_app(config_module.load(work / "config.toml"))
        try:
            versions.refresh(app)  # records the first versions
            unchanged = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                versions.refresh(app)
                unchanged.append(time.perf_counter() - t0)
            edit(work / "rules" / "free_update.toml", "price = 2500", "price = 2750")
            t0 = time.perf_counter()
            versions.refresh(app)
            valid = time.perf_counter() - t0
            if versions.watch(app).rules.number != 2:
                raise RuntimeError("the valid edit was not taken")
            edit(work / "rules" / "free_update.toml", "price = 2750", 'price = "mucho"')
            t0 = time.perf_counter()
            versions.refresh(app)
            invalid = time.perf_counter() - t0
            if versions.watch(app).rules.number != 2:
                raise RuntimeError("the invalid edit was taken")
        finally:
            app.store.close()
        base = floor([(work / "rules", ".toml"), (work / "templates", ".j2")], args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"unchanged": statistics.median(unchanged), "valid_edit": valid,
               "invalid_edit": invalid}
    print(f"version check per pass, {os.cpu_count()} cores; floor (stat of every file): "
          f"{base * 1000:.3f} ms")
    for name, seconds in figures.items():
        verdict = "PASS" if seconds < TARGETS[name] else "MISS"
        print(f"  {name:<13} {seconds * 1000:9.3f} ms   {seconds / base:8.1f}x the floor   "
              f"target < {TARGETS[name] * 1000:g} ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
