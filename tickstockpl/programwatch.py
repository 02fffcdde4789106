"""supervisord's view of every program, kept in Redis for health, doctor and the exporter.

A supervisord event listener (`[eventlistener:programwatch]` in supervisord.conf): supervisord
pushes each PROCESS_STATE change to it, and it writes every program's state, since when, and its
recent failures (unexpected exits and failed starts) to one hash. Push, not poll: the services run
as an unprivileged user and may not talk to supervisord's control socket (mode 0700, root's).
stdout is the listener protocol; our log lines go to stderr.

Several hosts may share one Redis (docs/scaling.md): a detectors-only host reports just its own
detector shards, and a fresh listener forgets only what its own host reported before (HostPrograms).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import redis

from tickstockpl.health import KEY_PROGRAMS, PROGRAM_FAILURE_WINDOW_S, as_text
from tickstockpl.settings import Settings, SettingsError
from tickstockpl.sharding import DETECTOR_PROGRAM
from tickstockpl.stores import redis_client

log = logging.getLogger("programwatch")

# A failure: an exit supervisord did not expect, or a start that did not last `startsecs` (BACKOFF).
FAILURE_STATES = frozenset({"BACKOFF", "FATAL"})


@dataclass
class ProgramStates:
    """Every program's last state and its failures within the window, as written to KEY_PROGRAMS."""

    window_s: float = PROGRAM_FAILURE_WINDOW_S
    programs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def update(self, name: str, state: str, *, expected: bool | None, now: float) -> dict[str, Any]:
        entry = self.programs.setdefault(name, {"state": state, "since": now, "failures": []})
        failed = state in FAILURE_STATES or (state == "EXITED" and expected is False)
        failures = [t for t in entry["failures"] if t > now - self.window_s]
        if failed:
            failures.append(now)
        entry.update(state=state, since=now, failures=failures)
        if state == "EXITED":
            entry["expected"] = bool(expected)
        return entry

    def as_hash(self) -> dict[str, str]:
        return {name: json.dumps(entry) for name, entry in self.programs.items()}


def parse_event(headers: Mapping[str, str], payload: str) -> tuple[str, str, bool | None] | None:
    """(group:name, state, expected) from a PROCESS_STATE_* event; None for any other event."""
    event = headers.get("eventname", "")
    if not event.startswith("PROCESS_STATE_"):
        return None
    first_line = payload.split("\n", 1)[0]
    fields = dict(item.split(":", 1) for item in first_line.split() if ":" in item)
    expected = fields.get("expected")
    name = f"{fields.get('groupname', '?')}:{fields.get('processname', '?')}"
    return name, event.removeprefix("PROCESS_STATE_"), None if expected is None else expected == "1"


GROUP_DETECTOR = f"tickstockpl:{DETECTOR_PROGRAM}-"  # + shard index: supervisord's group:process name


@dataclass(frozen=True)
class HostPrograms:
    """Which entries of KEY_PROGRAMS are this host's: on one host, all; with several hosts sharing
    Redis, the others' detector shards are theirs, and a detectors-only host owns only its shards."""

    first: int = 0  # this host's shards: first .. first + count - 1
    count: int = 1
    total: int = 1  # shards across every host
    detectors_only: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPrograms:
        return cls(
            settings.shard_first, settings.detector_shards, settings.total_shards, settings.detectors_only
        )

    def _shard(self, name: str) -> int | None:
        suffix = name.removeprefix(GROUP_DETECTOR)
        return int(suffix) if suffix != name and suffix.isdigit() else None

    def reports(self, name: str) -> bool:
        """Whether this host writes `name`'s state (a detectors-only host: its detectors only)."""
        return not self.detectors_only or self._shard(name) is not None

    def forgets(self, name: str) -> bool:
        """Whether a fresh listener removes `name`: what this host reported, and shards that no
        longer exist; never another host's."""
        shard = self._shard(name)
        if shard is None:
            return not self.detectors_only
        mine = self.first <= shard < self.first + self.count
        return mine or (shard >= self.total and not self.detectors_only)


class Watch:
    """The listener's state and its Redis writes (the whole hash each time: a missed write heals)."""

    def __init__(self, client: redis.Redis, host: HostPrograms | None = None) -> None:
        self.client = client
        self.host = host or HostPrograms()
        self.states = ProgramStates()
        self.fresh = True  # the hash still holds the previous run's states

    def handle(self, headers: Mapping[str, str], payload: str, now: float | None = None) -> None:
        parsed = parse_event(headers, payload)
        if parsed is None:
            return
        name, state, expected = parsed
        self.states.update(name, state, expected=expected, now=time.time() if now is None else now)
        if name.endswith(":programwatch"):
            return
        try:
            stale = self._forgotten() if self.fresh else []
            mine: dict[Any, Any] = {k: v for k, v in self.states.as_hash().items() if self.host.reports(k)}
            pipe = self.client.pipeline(transaction=True)
            if stale:
                pipe.hdel(KEY_PROGRAMS, *stale)
            if mine:
                pipe.hset(KEY_PROGRAMS, mapping=mine)
            pipe.execute()
            self.fresh = False
        except (redis.RedisError, OSError) as exc:
            log.warning("programwatch: cannot record %s %s in Redis: %s", name, state, exc)

    def _forgotten(self) -> list[str]:
        """This host's entries from before (another host's stay theirs)."""
        names = [as_text(key) or "" for key in self.client.hgetall(KEY_PROGRAMS)]
        return [name for name in names if self.host.forgets(name)]


def _read_event(stdin: TextIO, stdout: TextIO) -> tuple[dict[str, str], str]:
    """supervisord's listener protocol: READY, a header line, then `len` bytes of payload."""
    stdout.write("READY\n")
    stdout.flush()
    line = stdin.readline()
    if not line:
        raise EOFError
    headers = dict(item.split(":", 1) for item in line.split())
    payload = stdin.read(int(headers.get("len", "0")))
    return headers, payload


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        log.error("programwatch: configuration error: %s", exc)
        return 78
    watch = Watch(redis_client(settings), HostPrograms.from_settings(settings))
    while True:
        try:
            headers, payload = _read_event(sys.stdin, sys.stdout)
        except EOFError:
            return 0
        watch.handle(headers, payload)
        sys.stdout.write("RESULT 2\nOK")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
