"""What the commands share: the `--max-age` option, and one way to turn a store error into a line
for the operator and an exit code (exitcodes.py) that says whether to retry or to fix something."""

from __future__ import annotations

import argparse

from tickstockpl import contract
from tickstockpl.errors import (
    AuditConfigError,
    AuditDataError,
    PostgresUnavailable,
    RedisConfigError,
    RedisUnavailable,
    StoreUnavailable,
    TickStockPLError,
)
from tickstockpl.exitcodes import RET_CONFIG, RET_FAILED, RET_UNAVAILABLE, RET_USAGE
from tickstockpl.settings import Settings


def add_max_age(parser: argparse.ArgumentParser) -> None:
    """`--max-age SECONDS`: the oldest heartbeat that counts as fresh (`args.max_age`)."""
    parser.add_argument(
        "--max-age",
        type=float,
        default=contract.HEARTBEAT_MAX_AGE_S,
        metavar="SECONDS",
        help=f"oldest heartbeat that counts as fresh (default {contract.HEARTBEAT_MAX_AGE_S:g})",
    )


def store_name(exc: TickStockPLError, settings: Settings) -> str:
    """Which store an error came from, with where it was looked for."""
    if isinstance(exc, (RedisUnavailable, RedisConfigError)):
        return f"Redis at {settings.redis_target}"
    return f"PostgreSQL at {settings.postgres_target}"


def store_error_exit(command: str, exc: TickStockPLError, settings: Settings) -> int:
    """Print one line saying what went wrong and return the exit code for it.

    Unreachable: RET_UNAVAILABLE (worth retrying). Refused credentials, function or grant:
    RET_CONFIG (an operator must act). Data the database refused: RET_USAGE. Anything else: RET_FAILED.
    """
    where = store_name(exc, settings)
    if isinstance(exc, (RedisConfigError, AuditConfigError)):
        print(f"{command}: {where} refused: {exc}")
        return RET_CONFIG
    if isinstance(exc, AuditDataError):
        print(f"{command}: {where} rejected the data: {exc}")
        return RET_USAGE
    if isinstance(exc, (StoreUnavailable, PostgresUnavailable)):
        print(f"{command}: {where} unreachable: {exc}")
        return RET_UNAVAILABLE
    print(f"{command}: {exc}")
    return RET_FAILED
