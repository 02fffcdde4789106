"""`tickstockpl tail`: the producer's channels, one readable line per event.

The friendly twin of `redis-cli SUBSCRIBE tickstock.events.patterns ...`: patterns, health and
backtest messages each get a line an operator can scan, and a pattern that breaks the contract says
which field. `--json` prints `{"channel", "message"}` per line for machines; `--count N` exits after
N events (scripts and tests drive it that way). A lost connection is retried with backoff.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import redis

from tickstockpl import contract, health
from tickstockpl.backoff import Backoff
from tickstockpl.commands.common import store_error_exit
from tickstockpl.errors import TickStockPLError
from tickstockpl.exitcodes import RET_FAILED, RET_OK, RET_USAGE
from tickstockpl.settings import Settings

KIND = {
    contract.CHANNEL_PATTERNS: "pattern",
    contract.CHANNEL_HEALTH: "health",
    contract.CHANNEL_BACKTEST_PROGRESS: "progress",
    contract.CHANNEL_BACKTEST_RESULTS: "result",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help='one {"channel", "message"} object per line')
    parser.add_argument("--count", type=int, metavar="N", help="exit after N events")
    parser.add_argument(
        "--channel",
        action="append",
        metavar="CHANNEL",
        help="a channel to follow (repeatable; default: the four the consumer subscribes to)",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="give up (exit 1) if --count is not reached by then"
    )


def _clock(value: object) -> str:
    """HH:MM:SS.mmm of an epoch-seconds value, else of now (the event's own time when it has one)."""
    stamp = float(value) if type(value) in (int, float) else time.time()  # type: ignore[arg-type]
    return time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}"


def _number(value: object, spec: str, default: str = "-") -> str:
    return format(value, spec) if type(value) in (int, float) else default


def format_pattern(message: Mapping[str, Any]) -> str:
    data = message.get("data") if isinstance(message.get("data"), Mapping) else message
    assert isinstance(data, Mapping)
    price = _number(data.get("current_price"), ".2f")
    change = _number(data.get("price_change"), "+.2f")
    line = (
        f"{str(data.get('symbol', '?')):<8} {str(data.get('pattern', '?')):<20} "
        f"{_number(data.get('confidence'), '.2f', '?'):>5}  ${price:>9}  {change:>6}%  "
        f"{str(data.get('tier', '-')):<8}  flow {str(data.get('flow_id', '?'))[:8]}"
    )
    try:
        contract.validate_pattern_event(dict(message))
    except contract.ContractError as exc:
        line += f"  ! out of contract: {exc}"
    return line


def format_health(message: Mapping[str, Any]) -> str:
    components = message.get("components") if isinstance(message.get("components"), Mapping) else {}
    assert isinstance(components, Mapping)
    parts = []
    for name, value in components.items():
        if not isinstance(value, Mapping):
            continue
        status = value.get("status", "?")
        if name == "detector" and type(value.get("lag_seconds")) in (int, float):
            status = f"{status} (lag {value['lag_seconds']:.0f} s)"
        elif name == "outbox" and value.get("depth") is not None:
            status = f"{value['depth']}"
        elif name == "dead_letters" and value.get("count") is not None:
            status = f"{value['count']}"
        parts.append(f"{name.replace('_', ' ')} {status}")
    was = (
        f"  (was {message['previous_status']})"
        if message.get("changed") and message.get("previous_status")
        else ""
    )
    return f"{str(message.get('status', '?')):<9} {', '.join(parts)}{was}"


def format_backtest(kind: str, message: Mapping[str, Any]) -> str:
    job = str(message.get("job_id", "?"))
    if kind == "progress":
        progress = message.get("progress")
        shown = f"{progress * 100:5.1f}%" if type(progress) in (int, float) else "?"  # type: ignore[operator]
        symbol = message.get("current_symbol", "")
        return f"job {job}  {shown}  {symbol}".rstrip()
    results = message.get("results") if isinstance(message.get("results"), Mapping) else {}
    assert isinstance(results, Mapping)
    figures = " ".join(
        f"{name} {_number(results.get(name), '.3f')}" for name in contract.BACKTEST_RESULT_FIELDS
    )
    return f"job {job}  {message.get('status', '?')}  {figures}"


def format_line(channel: str, payload: bytes | str) -> str:
    """One readable line for one message; never raises, whatever arrived."""
    kind = KIND.get(channel, channel)
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        message = json.loads(text)
    except ValueError:
        return f"{_clock(None)} {kind:<8} not JSON: {text[:120]!r}"
    if not isinstance(message, dict):
        return f"{_clock(None)} {kind:<8} not a JSON object: {text[:120]}"
    try:
        if kind == "pattern":
            body = format_pattern(message)
        elif kind == "health":
            body = format_health(message)
        elif kind in ("progress", "result"):
            body = format_backtest(kind, message)
        else:
            body = json.dumps(message, separators=(",", ":"))[:200]
    except (TypeError, ValueError, KeyError, AssertionError):
        body = json.dumps(message, separators=(",", ":"), default=str)[:200]
    return f"{_clock(message.get('timestamp'))} {kind:<8} {body}"


def json_line(channel: str, payload: bytes | str) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        message: Any = json.loads(text)
    except ValueError:
        message = text
    return json.dumps({"channel": channel, "message": message}, ensure_ascii=False)


def _note(text: str) -> None:
    """Status lines go to stderr, so `tail --json | jq` sees events only."""
    print(f"tail: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.count is not None and args.count < 1:
        print("tail: --count must be at least 1")
        return RET_USAGE
    channels = tuple(args.channel or contract.PRODUCER_CHANNELS)
    client = health.checking_client(settings)
    try:
        health.ping_redis(client)
    except TickStockPLError as exc:
        return store_error_exit("tail", exc, settings)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    backoff = Backoff("Redis")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(*channels)
        _note(f"listening on {', '.join(channels)} at {settings.redis_target} (Ctrl-C to stop)")
        while args.count is None or seen < args.count:
            if deadline is not None and time.monotonic() > deadline:
                _note(f"timed out after {args.timeout:g} s with {seen} event(s)")
                return RET_FAILED
            try:
                message = pubsub.get_message(timeout=0.2)
                backoff.succeeded()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                time.sleep(backoff.failed(exc))
                continue  # redis-py resubscribes the channels when it reconnects
            if message is None or message["type"] != "message":
                continue
            channel = (
                message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            )
            line = json_line(channel, message["data"]) if args.json else format_line(channel, message["data"])
            print(line, flush=True)
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        pubsub.close()
        client.close()
    return RET_OK
