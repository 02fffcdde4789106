"""`tickstockpl heartbeat --check`: exit 0 when the heartbeat is fresh, 1 otherwise.

For container health checks (docker-compose's `healthcheck`, arq's `--check`): the same reading the
consumer makes, `float(GET tickstock:producer:heartbeat)` as epoch seconds, and one line saying why.
Without `--check` it prints the reading and exits 0.
"""

from __future__ import annotations

import argparse

from tickstockpl import contract, health
from tickstockpl.commands.common import add_max_age
from tickstockpl.errors import TickStockPLError
from tickstockpl.exitcodes import RET_FAILED, RET_OK, RET_USAGE
from tickstockpl.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="exit 1 unless the heartbeat is fresh")
    add_max_age(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.max_age <= 0:
        print("heartbeat: --max-age must be greater than 0")
        return RET_USAGE
    client = health.checking_client(settings)
    try:
        reading = health.read_heartbeat(client)
    except TickStockPLError as exc:
        print(f"heartbeat: Redis at {settings.redis_target} unavailable: {exc}")
        return RET_FAILED
    finally:
        client.close()
    problem = reading.problem(args.max_age)
    if problem is None:
        print(f"heartbeat: fresh, {reading.age_s:.1f} s old (limit {args.max_age:g} s)")
        return RET_OK
    shown = "" if reading.raw is None else f" (value {reading.raw[:40]!r})"
    print(f"heartbeat: {contract.KEY_HEARTBEAT} {problem}{shown}")
    return RET_FAILED if args.check else RET_OK
