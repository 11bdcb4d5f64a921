"""Cold start of the `mailbot` command, timed as whole processes (issue 10, §4).

A script, not a test: it prints its figures and exits 0 even when a target is missed (a
command that fails is still an error). Each command is started `--runs` times (default 7) as
a fresh `python -m mailbot ...` process and the median wall time, from spawn to exit, is
printed:

- `python -c pass` and `python -c "import email"`: the FLOOR, what any Python command costs on
  this machine now (each figure is also printed as a ratio to `import email`);
- `mailbot --help` (target < 0.15 s);
- `mailbot parse FILE` of one mail, tests/data/mail/seed_example_plain_utf8.eml (target
  < 0.35 s);
- `mailbot run --once` on an empty Maildir with the embedded defaults, in a fresh directory
  whose store was created by a first, untimed run (no target; the figure to watch).

Every command runs once untimed first, with bytecode caching on (PYTHONPYCACHEPREFIX in the
work directory, whatever PYTHONDONTWRITEBYTECODE says): an installed mailbot runs from the .pyc
files pip wrote, and compiling the sources on each start would measure the compiler instead.

Run: `.venv/bin/python benchmarks/cold_start.py [--runs N] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_MAIL = ROOT / "tests" / "data" / "mail" / "seed_example_plain_utf8.eml"
TARGETS = {"help": 0.15, "parse": 0.35}  # seconds, whole process


def timed(argv: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="processes per command (median)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else \
        (lambda *a: print(*a, flush=True))
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    work = Path(tempfile.mkdtemp(prefix="mailbot-cold-"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    commands = {
        "python_pass": [py, "-c", "pass"],
        "python_import_email": [py, "-c", "import email"],
        "help": [py, "-m", "mailbot", "--help"],
        "parse": [py, "-m", "mailbot", "parse", str(SEED_MAIL)],
        "run_once_empty": [py, "-m", "mailbot", "run", "--once"],
    }
    figures: dict = {"cores": os.cpu_count(), "python": sys.version.split()[0],
                     "runs": args.runs, "median_s": {}}
    try:
        for command in commands.values():  # bytecode written; run --once creates the store
            timed(command, cwd=work, env=env)
        for name, command in commands.items():
            times = [timed(command, cwd=work, env=env) for _ in range(args.runs)]
            figures["median_s"][name] = statistics.median(times)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = figures["median_s"]
    floor = median["python_import_email"]
    verdicts = {}
    say(f"mailbot cold start: median of {args.runs} processes, {os.cpu_count()} cores")
    for name, seconds in median.items():
        line = f"  {name:<20} {seconds:6.3f} s   {seconds / floor:5.1f}x the floor"
        if name in TARGETS:
            verdicts[name] = "PASS" if seconds < TARGETS[name] else "MISS"
            line += f"   target < {TARGETS[name]:g} s: {verdicts[name]}"
        elif name.startswith("python"):
            line += "   (floor)"
        say(line)
    figures["targets_s"] = TARGETS
    figures["verdicts"] = verdicts
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
