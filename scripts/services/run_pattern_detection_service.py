#!/usr/bin/env python3
"""The path the integration document tells users to run: the whole producer stack in the
foreground until SIGTERM (or Ctrl-C), logging to stdout. It is the same program as
src/services/pattern_detection_service.py, the path TickStockAppV2's launcher runs."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    launcher = Path(__file__).resolve().parents[2] / "src" / "services" / "pattern_detection_service.py"
    runpy.run_path(str(launcher), run_name="__main__")
