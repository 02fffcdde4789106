"""`tickstockpl replay`: the detector's signals, progress on stdout, a summary by pattern and symbol."""

from __future__ import annotations

import argparse
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tickstockpl import replay
from tickstockpl.exitcodes import RET_OK, RET_USAGE
from tickstockpl.patterns import history_signals
from tickstockpl.settings import Settings
from tickstockpl.sources.csv_replay import load_csv

DATA = Path(__file__).resolve().parents[2] / "data"
MINUTE = str(DATA / "minute_aapl_2026.csv")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    return parser.parse_args(argv)


def test_replay_finds_what_the_history_scan_finds() -> None:
    out = io.StringIO()
    result = replay.replay([MINUTE], out=out)
    bars = load_csv(MINUTE)
    arrays = [np.array([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")]
    expected = Counter((s.pattern, "AAPL") for s in history_signals(*arrays))
    assert result.bars == len(bars) == 2382
    assert result.counts == expected and result.published == 0
    lines = out.getvalue().splitlines()  # not a terminal: one line per 10 %
    assert 10 <= len(lines) <= 11 and lines[-1].startswith("[" + "#" * 30 + "] 100%")


def test_summary_table_rows_by_frequency_with_totals() -> None:
    table = replay.summary_table(Counter({("Doji", "AAPL"): 3, ("Doji", "MSFT"): 1, ("Hammer", "MSFT"): 2}))
    lines = table.splitlines()
    assert lines[0].split() == ["pattern", "AAPL", "MSFT", "total"]
    assert lines[2].split() == ["Doji", "3", "1", "4"]
    assert lines[3].split() == ["Hammer", "0", "2", "2"]
    assert lines[-1].split() == ["total", "3", "3", "6"]


def test_run_prints_the_summary_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse([MINUTE, "--speed", "0"]).speed == 0.0
    assert replay.run(parse([MINUTE]), Settings()) == RET_OK
    out = capsys.readouterr().out
    assert "2,382 bars" in out and "Volume_Spike" in out and "pattern" in out
    assert replay.run(parse(["/nonexistent.csv"]), Settings()) == RET_USAGE
    assert "nonexistent" in capsys.readouterr().out
    assert replay.run(parse([MINUTE, "--publish", "--min-confidence", "1.5"]), Settings()) == RET_USAGE
    assert "--min-confidence must be within 0-1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty
        "timestamp,symbol,open,high,low,close,volume\n",  # a header only
        "date,ticker,price\n2026-01-02,AAPL,1.0\n",  # other columns: every row misses a field
        "timestamp,symbol,open,high,low,close,volume\n2026-01-02,AAPL,10,9,11,10,100\n",  # high < low
    ],
    ids=["empty", "header-only", "wrong-columns", "every-bar-rejected"],
)
def test_a_file_with_no_usable_row_exits_non_zero(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nothing.csv"
    path.write_text(text)
    assert replay.run(parse([str(path)]), Settings()) == RET_USAGE
    assert f"replay: no usable rows in {path}" in capsys.readouterr().out
    good = tmp_path / "one-good.csv"  # one usable row is enough
    good.write_text("timestamp,symbol,open,high,low,close,volume\n2026-01-02,AAPL,10,11,9,10,100\n")
    assert replay.run(parse([str(path), str(good)]), Settings()) == RET_OK
