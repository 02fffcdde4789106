"""Shared test helpers: wait against a deadline (never a fixed sleep), and run our programs as real
processes with a Settings object as their environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tickstockpl.settings import Settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def poll(condition: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.02) -> T:
    """Return the first truthy value of `condition()`; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def run_python(
    settings: Settings, *argv: str, timeout_s: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python ARGV` to completion, configured by `settings` (plus `env`); cwd tests/, so no .env."""
    return subprocess.run(
        [sys.executable, *argv],
        env={**os.environ, **settings.to_env(), **env},
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_cli(settings: Settings, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """`tickstockpl ARGS` as a real process."""
    return run_python(settings, "-m", "tickstockpl.cli", *args, timeout_s=timeout_s)
