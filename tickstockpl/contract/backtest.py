"""Backtest progress and result messages (§2.4, §3.1, Appendix B item 13), built and validated."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from tickstockpl.contract.fields import ContractError, check_extra, check_number
from tickstockpl.contract.names import (
    EVENT_BACKTEST_PROGRESS,
    EVENT_BACKTEST_RESULT,
    PRODUCER_PREFIX,
    SOURCE_SYSTEM,
)

# --- Backtest progress and results (§2.4, §3.1, Appendix B item 13) ---------------------------------
# Flat messages: the consumer reads job_id, progress, status and results at the TOP level.
BACKTEST_COMPLETED: Final = "completed"
BACKTEST_FAILED: Final = "failed"
BACKTEST_CANCELLED: Final = "cancelled"  # the consumer treats anything but completed as FAILED
BACKTEST_RUNNING: Final = "running"
BACKTEST_TERMINAL: Final = frozenset({BACKTEST_COMPLETED, BACKTEST_FAILED, BACKTEST_CANCELLED})
# The fields the UI reads (fractions, not percentages), sent even on failure. They go both inside
# `results` (the consumer's Python side stores that object) and at the top level, equal: the browser's
# `updateBacktestResults` reads them from the message itself (issue 17).
BACKTEST_RESULT_FIELDS: Final = ("win_rate", "roi", "max_drawdown", "sharpe_ratio")
BACKTEST_MAX_SYMBOLS: Final = 50  # the consumer's own limit on a job (§3.1)
# `tickstockpl backtest` on the command line is not the job channel: the whole market fits (issue 14).
BACKTEST_CLI_MAX_SYMBOLS: Final = 20_000
BACKTEST_CLI_MAX_JOB_BYTES: Final = 1_048_576  # 20,000 tickers of up to 20 characters, quoted
KEY_BACKTEST_CANCELS: Final = PRODUCER_PREFIX + "backtest:cancel:"  # + job_id: a cancel seen, kept 1 day
KEY_BACKTEST_DONE: Final = PRODUCER_PREFIX + "backtest:done:"  # + job_id: its one result was sent, 7 days


def _check_job_id(job_id: object) -> str:
    if type(job_id) is not str or not job_id.strip():
        raise ContractError("job_id", "must be a non-empty string (echoed unchanged, not a UUID)")
    return job_id


def build_backtest_progress(
    job_id: str,
    progress: float,
    *,
    current_symbol: str | None = None,
    estimated_completion: float | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A flat progress message: top-level job_id and a float progress clamped to 0-1."""
    value = check_number("progress", progress)
    message: dict[str, Any] = {
        "event_type": EVENT_BACKTEST_PROGRESS,
        "source": SOURCE_SYSTEM,
        "timestamp": float(time.time() if now is None else now),
        "job_id": _check_job_id(job_id),
        "progress": min(1.0, max(0.0, value)),
        "status": BACKTEST_RUNNING,
    }
    if current_symbol is not None:
        message["current_symbol"] = current_symbol
    if estimated_completion is not None:
        message["estimated_completion"] = float(check_number("estimated_completion", estimated_completion))
    message.update(extra or {})
    return validate_backtest_progress(message)


def build_backtest_result(
    job_id: str,
    status: str,
    results: Mapping[str, Any] | None = None,
    *,
    error: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A flat result message; the UI's four fields (0.0 when not computed) are in `results` and, with
    the same values, at the top level."""
    if status not in BACKTEST_TERMINAL:
        raise ContractError("status", f"must be one of {sorted(BACKTEST_TERMINAL)}, got {status!r}")
    body: dict[str, Any] = {name: 0.0 for name in BACKTEST_RESULT_FIELDS}
    body.update({"total_trades": 0, "winning_trades": 0})
    body.update(results or {})
    message: dict[str, Any] = {
        "event_type": EVENT_BACKTEST_RESULT,
        "source": SOURCE_SYSTEM,
        "timestamp": float(time.time() if now is None else now),
        "job_id": _check_job_id(job_id),
        "status": status,
        "results": body,
    }
    message.update({name: body[name] for name in BACKTEST_RESULT_FIELDS})
    if error is not None:
        message["error"] = error
        body["error"] = error
    return validate_backtest_result(message)


def validate_backtest_progress(message: object) -> dict[str, Any]:
    """Check a progress message against §2.4 / Appendix B item 13; return it or raise ContractError."""
    if not isinstance(message, dict):
        raise ContractError("message", f"must be a JSON object, got {type(message).__name__}")
    _check_job_id(message.get("job_id"))
    progress = check_number("progress", message.get("progress"))
    if not 0.0 <= progress <= 1.0:
        raise ContractError("progress", f"must be within 0-1, got {progress!r}")
    for key, value in message.items():
        check_extra(key, value)
    return message


def validate_backtest_result(message: object) -> dict[str, Any]:
    """Check a result message against §2.4 / Appendix B item 13; return it or raise ContractError."""
    if not isinstance(message, dict):
        raise ContractError("message", f"must be a JSON object, got {type(message).__name__}")
    _check_job_id(message.get("job_id"))
    if message.get("status") not in BACKTEST_TERMINAL:
        raise ContractError("status", f"must be one of {sorted(BACKTEST_TERMINAL)}")
    results = message.get("results")
    if not isinstance(results, dict):
        raise ContractError("results", "must be an object")
    for name in BACKTEST_RESULT_FIELDS:
        check_number(f"results.{name}", results.get(name))
    for name in ("win_rate", "max_drawdown"):
        if not 0.0 <= results[name] <= 1.0:
            raise ContractError(f"results.{name}", f"must be a fraction within 0-1, got {results[name]!r}")
    for name in BACKTEST_RESULT_FIELDS:  # the browser reads the top level, the Python side `results`
        if name not in message or message[name] != results[name]:
            raise ContractError(name, f"must be at the top level too, equal to results.{name}")
    for key, value in message.items():
        check_extra(key, value)
    return message
