"""The latency floor for bench_relay: the least any relay does, in the relay's place.

Pops what the generator pushed (up to 1,000 at a time, blocking when there is nothing), PUBLISHes
each payload as it is and counts them: no audit row, no validation, no processing list, no ack.
Run in the same harness as the relay, at the same offered load and in the same minute, its p99 is
what this machine, Redis and the subscriber add by themselves. When the relay's p99 sits near it,
the tail comes from the host (scheduling stalls, a slow disk), not from the relay.

    python -m bench.latency_floor HOST PORT [--burst] [--audit]

With --burst it exits once the outbox is empty, as `tickstockpl.services.relay --burst` does: bench_relay
counts both programs' instructions per event on the same records.

With --audit it does the contract's minimum before each publish (Appendix B item 7): the batch's
PATTERN_PUBLISHED rows in ONE set-based `log_integration_event` call, committed (fsync), then the
pipelined PUBLISH; still no validation, processing list, recovery or ack. The PostgreSQL settings
come from the environment, as the relay's do. The relay's p99 is fairly compared with this floor:
the plain one leaves out the commit the contract requires.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence

import redis

from tickstockpl import contract
from tickstockpl.audit import AuditLog
from tickstockpl.settings import Settings

BATCH = 1_000
BLOCK_S = 0.5


def run(host: str, port: int, *, burst: bool = False, audit: AuditLog | None = None) -> None:
    client = redis.Redis(host=host, port=port)
    while True:
        if burst:
            popped = client.lmpop(1, contract.KEY_OUTBOX, direction="RIGHT", count=BATCH)
            if not popped:
                return
        else:
            popped = client.blmpop(BLOCK_S, 1, contract.KEY_OUTBOX, direction="RIGHT", count=BATCH)
            if not popped:
                continue
        _, payloads = popped
        if audit is not None:
            audit.log_published([json.loads(payload) for payload in payloads])
        pipe = client.pipeline(transaction=False)
        for payload in payloads:
            pipe.publish(contract.CHANNEL_PATTERNS, payload)
        pipe.hincrby(contract.KEY_STATS, contract.STAT_PATTERNS_PUBLISHED, len(payloads))
        pipe.execute()


def main(argv: Sequence[str] | None = None) -> int:
    host, port, *flags = argv if argv is not None else sys.argv[1:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The harness's settings, from the environment only (never a .env).
    audit = AuditLog(Settings.from_env(env_file=None)) if "--audit" in flags else None
    run(host, int(port), burst="--burst" in flags, audit=audit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
