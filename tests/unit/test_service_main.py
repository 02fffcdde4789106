"""Every supervised process starts the same way: a bad setting exits 78 (do not restart), naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("service", ["detector", "relay", "heartbeat", "exporter", "backtester"])
def test_bad_setting_exits_78_naming_the_variable(service: str, tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_PORT": "not-a-port", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", f"tickstockpl.services.{service}"],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78, result.stdout + result.stderr
    assert "REDIS_PORT='not-a-port'" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
