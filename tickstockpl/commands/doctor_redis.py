"""Doctor's Redis checks: our credentials, heartbeat, programs, subscribers, backlog, persistence."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tickstockpl import contract, health
from tickstockpl.commands.doctor_runner import Check, CheckRunner
from tickstockpl.errors import RedisConfigError, TickStockPLError


class RedisChecks(CheckRunner):
    """The checks that read the producer's Redis (skipped when it is unreachable)."""

    def check_redis(self, check: Check) -> Check:
        client = health.checking_client(self.settings)
        target = self.settings.redis_target
        try:
            millis = health.ping_redis(client)
        except RedisConfigError as exc:
            client.close()
            return check.failed(
                f"{target} refused our credentials (password, ACL user or TLS): {exc}",
                f"set REDIS_PASSWORD (and REDIS_USERNAME for an ACL user; REDIS_SSL, REDIS_SSL_CA_CERTS for "
                f"TLS) to what the Redis at {target} requires",
            )
        except TickStockPLError as exc:
            client.close()
            return check.failed(
                str(exc), f"start Redis, or point REDIS_HOST/REDIS_PORT/REDIS_DB at it (now {target})"
            )
        self.client = client
        return check.passed(f"{target}: PONG in {millis:.1f} ms", target=target, ping_ms=round(millis, 3))

    # --- the running stack -----------------------------------------------------------------------
    def check_heartbeat(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        reading = health.read_heartbeat(self.client)
        stats = health.read_stats(self.client)
        running = stats.running or reading.raw is not None or self.args.expect_running
        data: dict[str, Any] = {"age_s": reading.age_s, "value": reading.raw, "stack_running": running}
        last = self.client.get(contract.KEY_HEALTH)
        status = json.loads(last).get("status") if last else None
        data["status"] = status
        if not running:
            why = "never started here" if stats.started_at is None else "stopped cleanly"
            return check.skipped(f"no stack running ({why}); start it with `make up`")
        problem = reading.problem(self.args.max_age)
        if problem is not None:
            hint = (
                "start the heartbeat (make up, or supervisorctl start tickstockpl:heartbeat); it must "
                "SET the key to time.time() seconds every <= 20 s (contract §5.1)"
            )
            if reading.raw is not None and reading.error is not None:
                hint = "the key must hold float epoch seconds (repr(time.time())), not ms, ISO or JSON"
            return check.failed(f"{contract.KEY_HEARTBEAT} {problem}", hint, **data)
        shown = f"; last health status {status}" if status else ""
        return check.passed(f"{reading.age_s:.1f} s old (limit {self.args.max_age:g} s){shown}", **data)

    def check_programs(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        programs = health.read_programs(self.client)
        if not programs:
            return check.skipped("no supervisord of ours reports program states (is the stack running?)")
        component = health.program_component(programs)
        states = component["states"]
        if component["failing"]:
            return check.failed(
                "; ".join(component["failing"].values()),
                "see why in `make logs` (or docker compose logs), fix it, then "
                "`supervisorctl -c var/supervisorctl.conf restart <group:name>`",
                states=states,
            )
        shown = ", ".join(f"{name.split(':')[-1]} {state}" for name, state in sorted(states.items()))
        return check.passed(shown, states=states)

    def check_persistence(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        persistence = health.read_persistence(self.client)
        backlog = health.queue_depths(self.client).audit_backlog
        data = {"mode": persistence.mode, "audit_backlog": backlog}
        if persistence.mode == health.AOF:
            return check.passed(persistence.detail, **data)
        return check.failed(
            persistence.risk(backlog),
            "turn on AOF in that Redis (CONFIG SET appendonly yes, and appendonly yes in redis.conf), or "
            "give the producer a Redis of its own that has it; with CONFIG forbidden, ask its operator",
            **data,
        )

    def check_subscribers(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        counts = health.subscriber_counts(self.client)
        shown = ", ".join(f"{channel}={count}" for channel, count in counts.items())
        if counts.get(contract.CHANNEL_PATTERNS, 0) == 0:
            return check.failed(
                f"nobody subscribes to {contract.CHANNEL_PATTERNS} ({shown})",
                "start TickStockAppV2 and make it use the same Redis (REDIS_HOST/REDIS_PORT/REDIS_DB)",
                counts=counts,
            )
        return check.passed(shown, counts=counts)

    def check_backlog(self, check: Check) -> Check:
        if self.client is None:
            return check.skipped("Redis unreachable")
        depths = health.queue_depths(self.client)
        data = asdict(depths)
        shown = (
            f"outbox {depths.outbox}, processing {depths.processing}, dead letters {depths.dead_letters}, "
            f"audit backlog {depths.audit_backlog}"
        )
        hints = []
        if depths.outbox > self.thresholds.outbox_backlog:
            hints.append("the outbox is backing up: is the relay running (supervisorctl status)?")
        if depths.dead_letters:
            hints.append("inspect poison records with `tickstockpl deadletters`")
        if depths.audit_backlog:
            hints.append("audit rows wait for PostgreSQL: the relay writes them when it answers")
        if hints:
            return check.failed(shown, "; ".join(hints), **data)
        return check.passed(shown, **data)
