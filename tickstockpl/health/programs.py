"""Supervised programs as supervisord last reported them (written by tickstockpl/programwatch.py).

A program that is FATAL or restart-looping makes the stack degraded; this module says which.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import redis

from tickstockpl import contract
from tickstockpl.health.redis_readings import as_text
from tickstockpl.health.states import FAILING, OK, UNKNOWN
from tickstockpl.stores import redis_errors

# supervisord's view of every program (tickstockpl/programwatch.py): hash of group:name -> JSON
# {state, since, failures: [epoch s]}. A program is failing when FATAL, or restart-looping: this
# many failures (unexpected exits, failed starts) within the window.
KEY_PROGRAMS: Final = contract.PRODUCER_PREFIX + "programs"
PROGRAM_FAILURE_WINDOW_S: Final = 600.0
PROGRAM_MAX_FAILURES: Final = 3


@dataclass(frozen=True)
class ProgramState:
    """One supervised program as supervisord last reported it."""

    name: str  # group:name
    state: str
    since: float
    recent_failures: int  # within PROGRAM_FAILURE_WINDOW_S of now

    @property
    def problem(self) -> str | None:
        """Why this program makes the stack degraded, or None."""
        if self.state == "FATAL":
            return f"{self.name} FATAL (gave up restarting)"
        if self.recent_failures >= PROGRAM_MAX_FAILURES:
            minutes = PROGRAM_FAILURE_WINDOW_S / 60
            return f"{self.name} restart-looping ({self.recent_failures} failures in {minutes:g} min)"
        return None


def read_programs(client: redis.Redis, now: float | None = None) -> dict[str, ProgramState]:
    """Every program's state from KEY_PROGRAMS (empty when no supervisord of ours reports)."""
    with redis_errors("reading program states"):
        raw = client.hgetall(KEY_PROGRAMS)
    return parse_programs(raw, time.time() if now is None else now)


def parse_programs(raw: Mapping[Any, Any], now: float) -> dict[str, ProgramState]:
    """ProgramStates from an HGETALL reply of KEY_PROGRAMS; values we did not write are skipped."""
    programs: dict[str, ProgramState] = {}
    for key, value in raw.items():
        name = as_text(key) or ""
        try:
            entry = json.loads(value)
            failures = [float(t) for t in entry.get("failures", [])]
            programs[name] = ProgramState(
                name=name,
                state=str(entry["state"]),
                since=float(entry["since"]),
                recent_failures=sum(1 for t in failures if t > now - PROGRAM_FAILURE_WINDOW_S),
            )
        except (ValueError, KeyError, TypeError):
            continue  # not ours to judge: a value we did not write
    return programs


def program_component(programs: Mapping[str, ProgramState] | None) -> dict[str, Any]:
    """The `programs` component: ok, failing (with why), or unknown when nothing reports."""
    if not programs:
        return {"status": UNKNOWN, "failing": {}}
    failing = {name: program.problem for name, program in programs.items() if program.problem}
    return {
        "status": FAILING if failing else OK,
        "failing": failing,
        "states": {name: program.state for name, program in programs.items()},
    }
