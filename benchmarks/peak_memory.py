"""What one measured step of a benchmark process adds to its resident memory, on Linux: the
peak (VmHWM) reset before the step, then read after it; where the kernel cannot reset it,
the process's lifetime peak (ru_maxrss) stands in, which can only overstate the step."""

from __future__ import annotations

import resource


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """`start()` before the step, `mb()` after it: megabytes above the resident memory at start."""

    def start(self) -> None:
        try:  # reset VmHWM (Linux 4.0+), so the peak seen afterwards is the step's alone
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self._reset = True
        except OSError:
            self._reset = False
        self._baseline = self._now("VmRSS")

    def mb(self) -> float:
        return max(0, self._now("VmHWM") - self._baseline) / 1024

    def _now(self, field: str) -> int:
        return _rss_kb(field) if self._reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
