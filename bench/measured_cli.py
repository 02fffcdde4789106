"""`python -m bench.measured_cli ARGS`: `tickstockpl ARGS`, then its own peak RSS on stderr as JSON.

The process reads its VmHWM (the high-water mark of resident memory) as it exits, so the figure is
this one command's peak, not the largest of every child the benchmark ran.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tickstockpl.cli import main


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    code = main(sys.argv[1:])
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}), file=sys.stderr)
    sys.exit(code)
