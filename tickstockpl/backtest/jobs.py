"""A backtest job as TickStockAppV2 publishes it (contract §3.1), parsed and checked once.

Every rule the job breaks becomes a `JobError` whose message the `failed` result carries, so the user
sees what to fix; nothing in here touches a store.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, fields
from typing import Any

from tickstockpl import contract, inbound
from tickstockpl.backtest.signals import known_patterns
from tickstockpl.inbound import show

DAILY = "1d"  # the timeframe label jobs use unless parameters.timeframe says otherwise


@dataclass(frozen=True)
class JobLimits:
    """How big a job may be: the job channel keeps TickStockAppV2's limits (the default); the command
    line, which nobody else feeds, takes the whole market (CLI_LIMITS)."""

    max_symbols: int = contract.BACKTEST_MAX_SYMBOLS
    max_bytes: int = contract.MAX_JOB_BYTES


CLI_LIMITS = JobLimits(contract.BACKTEST_CLI_MAX_SYMBOLS, contract.BACKTEST_CLI_MAX_JOB_BYTES)


class JobError(inbound.Rejected):
    """A job that cannot run as sent; the message (short, escaped) says why, for the failed result."""


@dataclass(frozen=True)
class Parameters:
    """Trading parameters; defaults are the consumer UI's defaults (contract §3.1)."""

    initial_capital: float = 100_000.0
    commission_rate: float = 0.001  # of each fill's notional, charged on entry and on exit
    slippage_rate: float = 0.0005  # fills move this fraction against us
    max_position_size: float = 0.1  # each entry commits this fraction of equity, if the cash is free
    stop_loss_pct: float = 0.05
    take_profit_pct: float = 0.10
    max_holding_bars: int = 20  # bars held at most (the entry bar counts as the first)

    def __post_init__(self) -> None:
        checks = {
            "initial_capital": self.initial_capital > 0,
            "commission_rate": 0 <= self.commission_rate <= 0.01,
            "slippage_rate": 0 <= self.slippage_rate <= 0.01,
            "max_position_size": 0 < self.max_position_size <= 1,
            "stop_loss_pct": 0 < self.stop_loss_pct < 1,
            "take_profit_pct": self.take_profit_pct > 0,
            "max_holding_bars": self.max_holding_bars >= 1,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not math.isfinite(value) or not ok:
                raise JobError(f"parameters.{name}={show(value)} is out of range")

    @classmethod
    def from_mapping(cls, raw: object) -> Parameters:
        """Known numeric fields of a job's `parameters`; others are ignored (the UI may add more)."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise JobError("parameters must be an object")
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name not in raw or raw[item.name] is None:
                continue
            value = raw[item.name]
            if type(value) not in (int, float):
                raise JobError(f"parameters.{item.name} must be a number, got {show(value)}")
            if item.name == "max_holding_bars":
                if float(value) != int(value):
                    raise JobError(f"parameters.max_holding_bars must be a whole number, got {show(value)}")
                value = int(value)
            values[item.name] = value if item.name == "max_holding_bars" else float(value)
        return cls(**values)


@dataclass(frozen=True)
class Job:
    """One validated backtest job."""

    job_id: str
    symbols: tuple[str, ...]
    patterns: tuple[str, ...]
    start: dt.date
    end: dt.date
    parameters: Parameters
    timeframe: str = DAILY

    @property
    def duration_days(self) -> int:
        return (self.end - self.start).days


def job_id_of(raw: str | bytes) -> str | None:
    """The job_id of a message, even one that is not valid JSON, so a failed result can still be sent
    (None if it has no job_id we could echo safely: inbound.job_id_hint)."""
    return inbound.job_id_hint(raw)


def parse_job(raw: str | bytes, limits: JobLimits = JobLimits()) -> Job:
    """Parse a job message (the one decoder of `tickstock.jobs.backtest`): size, JSON and depth by
    inbound.load_object, then every field; JobError (an inbound.Rejected) says what is wrong."""
    try:
        message = inbound.load_object(raw, limits.max_bytes)
        if message.get("job_id") in (None, ""):
            raise JobError("job_id is missing or not a string", inbound.BAD_JOB_ID)
        job_id = inbound.check_job_id(message.get("job_id"))
    except JobError:
        raise
    except inbound.Rejected as exc:
        raise JobError(str(exc), exc.reason) from None
    parameters = Parameters.from_mapping(message.get("parameters"))
    timeframe = (message.get("parameters") or {}).get("timeframe", DAILY)
    if not isinstance(timeframe, str) or not 0 < len(timeframe) <= 10:
        raise JobError(f"parameters.timeframe must be a short label such as '1d', got {show(timeframe)}")
    start, end = _dates(message.get("start_date"), message.get("end_date"))
    return Job(
        job_id=job_id,
        symbols=_symbols(message.get("symbols"), limits.max_symbols),
        patterns=_patterns(message.get("patterns")),
        start=start,
        end=end,
        parameters=parameters,
        timeframe=timeframe,
    )


def _symbols(raw: object, limit: int) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise JobError("symbols must be a non-empty list of tickers")
    if len(raw) > limit:
        raise JobError(f"too many symbols: {len(raw):,} (at most {limit:,})")
    symbols: list[str] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, str) or not item.strip() or len(item.strip()) > contract.MAX_SYMBOL_LEN:
            raise JobError(f"bad symbol {show(item)}: a ticker of 1-{contract.MAX_SYMBOL_LEN} characters")
        symbol = item.strip().upper()
        if not inbound.TICKER.fullmatch(symbol):
            raise JobError(f"bad symbol {show(item)}: not a ticker ({contract.TICKER_PATTERN})")
        if symbol not in seen:  # a set: thousands of symbols from the command line
            seen.add(symbol)
            symbols.append(symbol)
    return tuple(symbols)


def _patterns(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise JobError("patterns must be a non-empty list of pattern names")
    if len(raw) > contract.MAX_JOB_PATTERNS:
        raise JobError(f"too many patterns: {len(raw)} (at most {contract.MAX_JOB_PATTERNS})")
    known = known_patterns()
    unknown = [item for item in raw if not isinstance(item, str) or item not in known]
    if unknown:
        offered = ", ".join(contract.UI_CANDLESTICK_PATTERNS)
        names = ", ".join(show(item) for item in unknown[:3]) + (" …" if len(unknown) > 3 else "")
        raise JobError(f"unknown pattern(s) {names}; known include {offered}")
    return tuple(dict.fromkeys(raw))


def _dates(start_raw: object, end_raw: object) -> tuple[dt.date, dt.date]:
    start, end = _date("start_date", start_raw), _date("end_date", end_raw)
    if not start < end:
        raise JobError(f"start_date {start} must be before end_date {end}")
    return start, end


def _date(name: str, raw: object) -> dt.date:
    if not isinstance(raw, str):
        raise JobError(f"{name} must be a YYYY-MM-DD string, got {show(raw)}")
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise JobError(f"{name} {show(raw)} is not a valid YYYY-MM-DD date") from None
