"""Logging to stdout: TickStockAppV2's launcher pipes stderr and never reads it (contract §6)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO", name: str = "tickstockpl") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
