"""The relay process: outbox → PATTERN_PUBLISHED row → PUBLISH + replay stream → ack.

Settings, wiring and the loop; the batches themselves are `tickstockpl.relay` (one idea a module:
decode, lists, durability, recovery, dead letters, stats). See docs/relay.md.

    python -m tickstockpl.services.relay [--burst]
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import threading
from collections.abc import Sequence

from tickstockpl.backoff import Backoff
from tickstockpl.errors import RedisConfigError, RedisUnavailable
from tickstockpl.exitcodes import RET_CONFIG, RET_FAILED, RET_OK
from tickstockpl.lifecycle import service_main
from tickstockpl.relay.batches import Relay
from tickstockpl.settings import Settings

log = logging.getLogger("tickstockpl.relay")

# Allocations (minus deallocations) of tracked objects between young-generation collections; Python's
# default is 700. The relay's garbage is freed by refcount, so a collection finds almost nothing.
GC_GEN0_THRESHOLD = 20_000

__all__ = ["Relay", "loop", "main", "run", "tune_gc"]


def tune_gc() -> None:
    """Keep the cyclic GC out of the latency tail: freeze what start-up allocated, collect rarely.

    With the defaults, a full collection walked every module, connection and compiled regex that
    start-up left behind: 15-50 ms with the GIL held, about once every 7 s at 10,000/s, and each
    one backs up 150-500 records (docs/relay.md, "Where the p99 tail comes from"). Frozen objects
    are never scanned again; a higher young threshold makes collections rare, and what they scan
    is only what was allocated since, so memory stays bounded.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def loop(relay: Relay, stop: threading.Event, burst: bool = False) -> str:
    """Step the relay until asked to stop (or, in burst mode, until there is nothing left); say why."""
    redis_backoff = Backoff("Redis")
    while True:
        if stop.is_set():
            return "stopping on request" + relay.finish_inflight()
        try:
            idle = relay.step(burst)
            redis_backoff.succeeded()
        except RedisUnavailable as exc:
            relay.abandon_inflight()
            relay.need_recovery = True
            delay = redis_backoff.failed(exc)  # logs the state change once
            log.debug("Redis attempt %d failed; next in %.2f s", redis_backoff.attempts, delay)
            stop.wait(delay)
            continue
        if burst and idle:
            return "burst done: outbox and processing list empty"


def run(settings: Settings, stop: threading.Event | None = None, *, burst: bool = False) -> int:
    """Run the relay until `stop` is set (or, with `burst`, until the outbox is empty); exit code."""
    stop = stop if stop is not None else threading.Event()
    relay = Relay(settings)
    log.info(
        "relay starting: redis %s, audit %s, batch %d",
        settings.redis_target,
        settings.postgres_target if settings.audit_enabled else "disabled",
        settings.relay_batch_size,
    )
    code = RET_OK
    try:
        reason = loop(relay, stop, burst)
    except RedisConfigError as exc:  # a wrong password or ACL: restarting will not help, an operator must act
        log.error("relay cannot use Redis at %s: %s", settings.redis_target, exc)
        reason, code = f"Redis refused us: {exc}", RET_CONFIG
    except Exception as exc:  # a bug: say so, leave the records for recovery, let supervisord restart us
        log.exception("relay failed")
        reason, code = f"unexpected error: {exc!r}", RET_FAILED
    finally:
        relay.close()
    log.info("relay stopped: %s", reason)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tickstockpl.services.relay", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--burst", action="store_true", help="exit once the outbox is empty")
    args = parser.parse_args(argv)
    tune_gc()  # process-wide, hence here and not in run(), which tests call in their own process
    return service_main("relay", lambda settings, stop: run(settings, stop, burst=args.burst))


if __name__ == "__main__":
    sys.exit(main())
