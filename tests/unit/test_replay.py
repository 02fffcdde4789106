"""`tickstockpl replay`: the detector's signals over files, a readable summary, `--json`, exit codes."""

from __future__ import annotations

import argparse
import gzip
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.support import run_cli
from tickstockpl import replay
from tickstockpl.exitcodes import RET_OK, RET_USAGE
from tickstockpl.patterns import history_signals
from tickstockpl.replay_report import text_report
from tickstockpl.settings import Settings
from tickstockpl.sources.csv_replay import load_csv

DATA = Path(__file__).resolve().parents[2] / "data"
MINUTE = str(DATA / "minute_aapl_2026.csv")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    return parser.parse_args(argv)


def expected_counts(path: str) -> Counter[str]:
    bars = load_csv(path)
    arrays = [np.array([getattr(b, f) for b in bars]) for f in ("open", "high", "low", "close", "volume")]
    return Counter(s.pattern for s in history_signals(*arrays))


def test_replay_finds_what_the_history_scan_finds() -> None:
    out = io.StringIO()
    result = replay.replay([MINUTE], out=out)
    assert result.bars == result.rows == 2382 and result.symbols == result.series == 1
    assert result.by_pattern == expected_counts(MINUTE) and result.published == 0
    assert result.by_symbol == {"AAPL": result.signals}
    assert out.getvalue() == ""  # not a terminal: no progress at all


def test_a_gzipped_massive_copy_gives_the_same_patterns(tmp_path: Path) -> None:
    bars = load_csv(MINUTE)
    rows = "".join(
        f"AAPL,{b.volume!r},{b.open!r},{b.close!r},{b.high!r},{b.low!r},{b.start * 10**9},1\n" for b in bars
    )
    path = tmp_path / "2026-07-29.csv.gz"
    path.write_bytes(
        gzip.compress(b"ticker,volume,open,close,high,low,window_start,transactions\n" + rows.encode())
    )
    assert replay.replay([str(path)]).by_pattern == expected_counts(MINUTE)


def test_summary_names_patterns_top_symbols_totals_rejects_and_the_filter() -> None:
    result = replay.ReplayResult(
        files=["a.csv"],
        bars=1000,
        rows=1003,
        by_pattern=Counter({"Doji": 30, "Hammer": 10}),
        by_symbol=Counter({f"S{i}": 40 - i for i in range(12)}),
        symbols=12,
        series=12,
        rejected=Counter({"missing_field": 2, "high_below_low": 1}),
        publish=True,
        min_confidence=0.7,
        published=7,
        held_back=33,
        elapsed_s=2.0,
    )
    lines = text_report(result, top=3).splitlines()
    assert lines[0] == "1,000 bars of 12 symbols (12 series) from 1 file(s) in 2.0 s, 500 bars/s: 40 patterns"
    at = lines.index("patterns by name")
    assert lines[at + 1].split() == ["Doji", "30", "75.0%"] and lines[at + 2].split()[0] == "Hammer"
    at = lines.index("top 3 of 12 symbols with patterns")
    assert [line.split()[0] for line in lines[at + 1 : at + 4]] == ["S0", "S1", "S2"]
    assert "rejected bars: 3 (high_below_low 1, missing_field 2)" in lines
    assert lines[-1] == (
        "published: 7 events enqueued for the relay (filter: confidence >= 0.70); 33 below it held back"
    )


def test_run_prints_json_and_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert replay.run(parse([MINUTE, "--json"]), Settings(timeframes=())) == RET_OK
    report = json.loads(capsys.readouterr().out)
    assert report["bars"] == 2382 and report["by_pattern"] == dict(expected_counts(MINUTE))
    assert report["patterns"] == sum(report["by_pattern"].values()) == report["by_symbol"]["AAPL"]
    assert report["publish"] == {"enabled": False, "min_confidence": None, "published": 0, "held_back": 0}
    assert report["rejected"] == {} and report["files"] == [MINUTE]

    assert replay.run(parse([MINUTE, "--patterns", "Doji,Hammer", "--json"]), Settings()) == RET_OK
    assert set(json.loads(capsys.readouterr().out)["by_pattern"]) == {"Doji", "Hammer"}
    assert replay.run(parse([MINUTE, "--patterns", "Doji,Nope"]), Settings()) == RET_USAGE
    assert "unknown pattern(s) 'Nope'" in capsys.readouterr().out
    assert replay.run(parse(["/nonexistent.csv"]), Settings()) == RET_USAGE
    assert "nonexistent" in capsys.readouterr().out
    assert replay.run(parse([MINUTE, "--publish", "--min-confidence", "1.5"]), Settings()) == RET_USAGE
    assert "--min-confidence must be within 0-1" in capsys.readouterr().out


def test_a_file_whose_every_bar_is_rejected_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows were read, none was a usable bar (high < low): nothing was judged, so exit 64."""
    path = tmp_path / "nothing.csv"
    path.write_text("timestamp,symbol,open,high,low,close,volume\n2026-01-02,AAPL,10,9,11,10,100\n")
    assert replay.run(parse([str(path)]), Settings()) == RET_USAGE
    assert f"replay: no usable rows in {path}" in capsys.readouterr().out


def test_a_file_with_no_usable_row_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,symbol,open,high,low,close,volume\n2020-01-02,ZZZ,,,,,\n")
    assert replay.run(parse([MINUTE, str(empty)]), Settings()) == RET_USAGE
    out = capsys.readouterr().out
    assert f"replay: no usable bar in {empty}" in out and "missing_field 1" in out
    header_only = tmp_path / "header.csv.gz"
    header_only.write_bytes(gzip.compress(b"ticker,volume,open,close,high,low,window_start,transactions\n"))
    assert replay.run(parse([str(header_only), "--json"]), Settings()) == RET_USAGE
    assert json.loads(capsys.readouterr().out)["files_without_bars"] == [str(header_only)]


def test_the_cli_as_a_process_on_a_directory(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_bytes(Path(MINUTE).read_bytes())
    done = run_cli(Settings(), "replay", str(tmp_path), "--top", "1", timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("2,382 bars of 1 symbols (5 series) from 1 file(s)")  # 1m + 4 timeframes
    assert "top 1 of 1 symbols with patterns" in done.stdout and "Traceback" not in done.stderr
