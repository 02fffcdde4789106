"""Jobs as TickStockAppV2 publishes them (contract §3.1), every bad-job rule, and the flat messages (§2.4)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tickstockpl import contract
from tickstockpl.backtest.jobs import JobError, Parameters, job_id_of, parse_job
from tickstockpl.backtest.queue import cancel_target


def consumer_job(**changes: Any) -> dict[str, Any]:
    """Exactly the fields and defaults backtest_job_manager.py publishes."""
    job = {
        "type": "backtest_job",
        "job_id": "backtest_1758300000_1a2b3c4d",
        "user_id": "anonymous",
        "symbols": ["AAPL", "MSFT"],
        "start_date": "2005-01-01",
        "end_date": "2009-12-31",
        "patterns": ["Hammer", "Doji", "Engulfing"],
        "parameters": {
            "initial_capital": 100000,
            "commission_rate": 0.001,
            "slippage_rate": 0.0005,
            "max_position_size": 0.1,
            "stop_loss_pct": 0.05,
            "take_profit_pct": 0.10,
        },
        "timestamp": 1758300000.5,
        "source": "tickstock_appv2",
    }
    job.update(changes)
    return job


def test_consumer_job_parses_with_its_id_echoed_unchanged() -> None:
    job = parse_job(json.dumps(consumer_job()))
    assert job.job_id == "backtest_1758300000_1a2b3c4d"
    assert job.symbols == ("AAPL", "MSFT") and job.patterns == ("Hammer", "Doji", "Engulfing")
    assert (job.start, job.end) == (dt.date(2005, 1, 1), dt.date(2009, 12, 31))
    assert job.parameters == Parameters()  # the UI's defaults are ours
    assert job.timeframe == "1d"


def test_every_ui_pattern_is_accepted() -> None:
    job = parse_job(json.dumps(consumer_job(patterns=list(contract.UI_CANDLESTICK_PATTERNS))))
    assert job.patterns == contract.UI_CANDLESTICK_PATTERNS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"patterns": ["Hammer", "FlyingPig"]}, "unknown pattern(s) 'FlyingPig'"),
        ({"patterns": []}, "patterns must be a non-empty list"),
        ({"start_date": "2005-13-01"}, "start_date '2005-13-01' is not a valid YYYY-MM-DD date"),
        ({"end_date": "31/12/2009"}, "end_date '31/12/2009' is not a valid"),
        ({"start_date": "2010-01-01", "end_date": "2009-01-01"}, "must be before end_date"),
        ({"start_date": 20050101}, "start_date must be a YYYY-MM-DD string"),
        ({"symbols": [f"S{i}" for i in range(51)]}, "too many symbols: 51 (at most 50)"),
        ({"symbols": []}, "symbols must be a non-empty list"),
        ({"symbols": ["X" * 21]}, "bad symbol"),
        ({"parameters": {"commission_rate": 0.5}}, "parameters.commission_rate=0.5 is out of range"),
        ({"parameters": {"stop_loss_pct": "5%"}}, "parameters.stop_loss_pct must be a number"),
        ({"parameters": [1, 2]}, "parameters must be an object"),
        ({"job_id": ""}, "job_id is missing"),
    ],
)
def test_bad_jobs_say_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError) as caught:
        parse_job(json.dumps(consumer_job(**changes)))
    assert message in str(caught.value)


def test_fifty_symbols_is_the_limit_not_more() -> None:
    assert len(parse_job(json.dumps(consumer_job(symbols=[f"S{i}" for i in range(50)]))).symbols) == 50


def test_malformed_json_is_a_job_error_and_its_id_is_still_found() -> None:
    raw = '{"type": "backtest_job", "job_id": "backtest_1_deadbeef", "symbols": ["AAPL",'
    with pytest.raises(JobError, match="not valid JSON"):
        parse_job(raw)
    assert job_id_of(raw) == "backtest_1_deadbeef"
    assert job_id_of(b"not json at all") is None
    assert job_id_of(json.dumps(["backtest_1_x"])) is None
    with pytest.raises(JobError, match="must be a JSON object"):
        parse_job("[1, 2]")


def test_cancel_message_target() -> None:
    cancel = {"type": "cancel_job", "job_id": "backtest_1_a", "timestamp": 1.0, "source": "tickstock_appv2"}
    assert cancel_target(json.dumps(cancel).encode()) == "backtest_1_a"
    assert cancel_target(b"{oops") is None and cancel_target(b'{"type": "cancel_job"}') is None


def test_progress_message_is_flat_with_numeric_fraction() -> None:
    message = contract.build_backtest_progress("backtest_1_a", 0.4, current_symbol="AAPL", now=5.0)
    assert message["job_id"] == "backtest_1_a" and message["progress"] == 0.4
    assert message["status"] == "running" and message["current_symbol"] == "AAPL"
    assert (message["event_type"], message["source"], message["timestamp"]) == (
        "backtest_progress",
        "TickStockPL",
        5.0,
    )
    assert contract.build_backtest_progress("j", 1.7)["progress"] == 1.0
    with pytest.raises(contract.ContractError):
        contract.validate_backtest_progress({"job_id": "j", "progress": "40%"})
    with pytest.raises(contract.ContractError):
        contract.validate_backtest_progress({"data": {"job_id": "j"}, "progress": 0.5})


def test_result_message_always_carries_the_ui_fields() -> None:
    failed = contract.build_backtest_result("backtest_1_a", "failed", error="no bars")
    assert failed["status"] == "failed" and failed["error"] == "no bars"
    assert {k: failed["results"][k] for k in contract.BACKTEST_RESULT_FIELDS} == dict.fromkeys(
        contract.BACKTEST_RESULT_FIELDS, 0.0
    )
    assert failed["results"]["error"] == "no bars"
    done = contract.build_backtest_result(
        "j", "completed", {"win_rate": 0.5, "max_drawdown": 0.1, "roi": -0.2}
    )
    assert done["results"]["roi"] == -0.2 and done["results"]["total_trades"] == 0
    for message in (failed, done):  # also at the top level, for the browser (issue 17)
        for name in contract.BACKTEST_RESULT_FIELDS:
            assert message[name] == message["results"][name]
    top_level = (done["win_rate"], done["roi"], done["max_drawdown"], done["sharpe_ratio"])
    assert top_level == (0.5, -0.2, 0.1, 0.0)
    for broken in ({k: v for k, v in done.items() if k != "roi"}, {**done, "win_rate": 0.25}):
        with pytest.raises(contract.ContractError):
            contract.validate_backtest_result(broken)
    with pytest.raises(contract.ContractError):
        contract.build_backtest_result("j", "done")
    with pytest.raises(contract.ContractError):
        contract.build_backtest_result("j", "completed", {"win_rate": 52.0})  # a percentage, not a fraction
