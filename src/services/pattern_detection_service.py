#!/usr/bin/env python3
"""The path TickStockAppV2's launcher (`start_both_services.py`) runs: the whole producer stack in
the foreground until SIGTERM, logging to stdout.

The launcher runs `python <root>/src/services/pattern_detection_service.py` with the producer root
as working directory but not on sys.path, with an interpreter that may lack our dependencies, and
with stderr piped and never read. So: re-run under the project's .venv when there is one, put the
root on sys.path, and send stderr to stdout so a full pipe can never block anything.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    os.dup2(sys.stdout.fileno(), sys.stderr.fileno())  # everything, children included, on stdout
    venv = ROOT / ".venv"
    if (venv / "bin" / "python").exists() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(str(venv / "bin" / "python"), [str(venv / "bin" / "python"), __file__, *sys.argv[1:]])
    sys.path.insert(0, str(ROOT))
    from tickstockpl.commands.stack import foreground_main

    return foreground_main()


if __name__ == "__main__":
    sys.exit(main())
