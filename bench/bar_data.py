"""What the replay and load-history benchmarks share: generated bar files, and the CLI run as a fresh
process with its wall time, CPU time and peak memory measured.

The files are made by the benchmark into a temporary directory (never committed): the synthetic
market of bench_detector (tickstockpl/sources/synthetic.py), SYMBOLS symbols, one bar per minute,
written in our layout in time order, and in Massive's flat-file layout ticker by ticker (as Massive
lists a day) and gzipped.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tickstockpl.settings import Settings
from tickstockpl.sources.synthetic import SyntheticMarket

SYMBOLS = 2_000
START = 1_700_000_040  # a minute boundary in November 2023
PLAIN_HEADER = "timestamp,symbol,open,high,low,close,volume\n"
MASSIVE_HEADER = "ticker,volume,open,close,high,low,window_start,transactions\n"


class Files(NamedTuple):
    plain: Path  # our layout, in time order
    doubled: Path  # the same twice over: the second copy two days later
    massive: Path  # the same bars in Massive's flat-file layout, ticker by ticker, gzipped
    bars: int  # in `plain` and `massive` (twice that in `doubled`)


def generate(
    directory: Path, minutes: int, symbols: int = SYMBOLS, seed: int = 11, *, all_three: bool = True
) -> Files:
    """`minutes` boundaries of `symbols` bars of the synthetic market, in the three files (only the
    first unless `all_three`)."""
    names = [f"S{i:05d}" for i in range(symbols)]
    market = SyntheticMarket(names, seed=seed, start=START)
    values = np.empty((symbols, minutes, 5))  # volume, open, close, high, low: Massive's order
    plain = directory / "bars.csv"
    with plain.open("w") as out:
        out.write(PLAIN_HEADER)
        for minute in range(minutes):
            bars = market.step()
            stamp = datetime.fromtimestamp(bars[0].start, UTC).isoformat(sep=" ")
            out.write(
                "".join(
                    f"{stamp},{b.symbol},{b.open:.2f},{b.high:.2f},{b.low:.2f},{b.close:.2f},{b.volume:.0f}\n"
                    for b in bars
                )
            )
            values[:, minute] = [(b.volume, b.open, b.close, b.high, b.low) for b in bars]
    doubled, massive = directory / "bars2.csv", directory / "flat.csv.gz"
    if not all_three:
        return Files(plain, doubled, massive, minutes * symbols)
    text = plain.read_text()
    later = text.split("\n", 1)[1]
    for day in (15, 14):  # two days later; the later day first, so no date is shifted twice
        later = later.replace(f"2023-11-{day} ", f"2023-11-{day + 2} ")
    doubled.write_text(text + later)
    starts = [(START + 60 * minute) * 1_000_000_000 for minute in range(minutes)]
    with gzip.open(massive, "wt", compresslevel=1) as out:
        out.write(MASSIVE_HEADER)
        for name, rows in zip(names, values, strict=True):
            out.write(
                "".join(
                    f"{name},{v:.0f},{o:.2f},{c:.2f},{h:.2f},{low:.2f},{start},{int(v) // 100 + 1}\n"
                    for (v, o, c, h, low), start in zip(rows.tolist(), starts, strict=True)
                )
            )
    return Files(plain, doubled, massive, minutes * symbols)


def run_cli(settings: Settings | None, *args: str) -> dict[str, Any]:
    """`tickstockpl ARGS` in a fresh process (bench.measured_cli): its exit code, stdout, wall time,
    CPU time and peak RSS (VmHWM, read by the child itself as it exits)."""
    env = {**os.environ, "TICKSTOCKPL_ENV_FILE": "", **(settings.to_env() if settings else {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench.measured_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"tickstockpl {' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}")
    peak = json.loads(done.stderr.strip().splitlines()[-1])["peak_rss_mb"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"stdout": done.stdout, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak}
