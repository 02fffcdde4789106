"""`tickstockpl publish-test`: the integration document's test pattern generator, done properly.

Audit row first, then publish, through the same path the relay uses. Prints what it sent and how
many subscribers heard it. Any failure is one line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import random

import redis

from tickstockpl import contract
from tickstockpl.audit import AuditLog
from tickstockpl.backtest.signals import known_patterns
from tickstockpl.commands.common import store_error_exit
from tickstockpl.errors import (
    AuditConfigError,
    AuditDataError,
    RedisConfigError,
    RedisUnavailable,
    StoreUnavailable,
)
from tickstockpl.exitcodes import RET_OK, RET_USAGE
from tickstockpl.publisher import Outgoing, audit_then_publish
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client

TEST_SYMBOLS = ("AAPL", "GOOGL", "MSFT", "TSLA", "NVDA")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbol", help=f"ticker (default: random of {'/'.join(TEST_SYMBOLS)})")
    parser.add_argument(
        "--pattern",
        help="a pattern the detector publishes (default: random of the integration document's four)",
    )
    parser.add_argument(
        "--custom", action="store_true", help="allow a --pattern name the detector does not know (on purpose)"
    )
    parser.add_argument("--confidence", type=float, help="0-1 (default: random 0.60-0.95)")
    parser.add_argument("--count", type=int, default=1, help="how many events (default 1)")
    parser.add_argument("--seed", type=int, help="random seed, for a repeatable run")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.count < 1:
        print("publish-test: --count must be at least 1")
        return RET_USAGE
    if args.pattern is not None and not args.custom and args.pattern not in known_patterns():
        print(f"publish-test: {_unknown_pattern(args.pattern)}")
        return RET_USAGE
    rng = random.Random(args.seed)
    try:
        batch = [
            Outgoing.from_event(
                contract.build_pattern_event(
                    symbol=args.symbol or rng.choice(TEST_SYMBOLS),
                    pattern=args.pattern or rng.choice(contract.REQUIREMENTS_PATTERNS),
                    confidence=args.confidence if args.confidence is not None else rng.uniform(0.6, 0.95),
                    tier="intraday",
                    current_price=round(rng.uniform(50, 500), 2),
                    price_change=round(rng.uniform(-3, 3), 2),
                    extra={"test": True},
                )
            )
            for _ in range(args.count)
        ]
    except contract.ContractError as exc:
        print(f"publish-test: invalid event: {exc}")
        return RET_USAGE
    client = redis_client(settings)
    audit = AuditLog(settings)
    try:
        _ping(client, settings)
        extra = [{"test": True}] * len(batch)
        counts = audit_then_publish(
            client, audit, batch, replay_maxlen=settings.replay_stream_maxlen, extra_details=extra
        )
    except (StoreUnavailable, RedisConfigError, AuditConfigError, AuditDataError) as exc:
        return store_error_exit("publish-test", exc, settings)
    finally:
        audit.close()
        client.close()
    for item, subscribers in zip(batch, counts, strict=True):
        data = item.event["data"]
        print(
            f"published {data['pattern']} {data['symbol']} confidence={data['confidence']:.2f} "
            f"flow_id={data['flow_id']} subscribers={subscribers}"
        )
    if not any(counts):
        print(f"warning: nobody is listening on {contract.CHANNEL_PATTERNS} (is TickStockAppV2 running?)")
    return RET_OK


def _unknown_pattern(name: str) -> str:
    """A typo must not reach the live channel and the audit table: say what was meant, or how to insist."""
    known = sorted(known_patterns())
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    close += [k for k in known if k.lower() == name.lower() and k not in close]
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return f"unknown pattern {name[:60]!r}; {hint}add --custom to publish a name of your own"


def _ping(client: redis.Redis, settings: Settings) -> None:
    """Check Redis before writing an audit row for an event we could not publish."""
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise RedisConfigError(str(exc)) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(str(exc)) from None
