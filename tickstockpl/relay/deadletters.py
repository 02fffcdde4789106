"""Dead letters: records the relay will not retry, kept with their reason and original bytes.

The relay files them (`add`) in the same atomic finish that acks their batch; operators read and
requeue them with `tickstockpl deadletters`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from tickstockpl import contract
from tickstockpl.relay.lists import Finish, as_bytes
from tickstockpl.stores import redis_errors

log = logging.getLogger("tickstockpl.relay")

# Requeue one dead letter: only if it is still there, so two operators cannot requeue it twice.
_REQUEUE_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[2])
    return 1
end
return 0
"""


def payload_fields(payload: bytes) -> dict[str, str]:
    """The original bytes, kept exactly: as text when they are UTF-8, else base64."""
    try:
        return {"payload": payload.decode("utf-8"), "payload_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "payload_encoding": "base64"}


def payload_bytes(entry: Mapping[str, Any]) -> bytes:
    if entry.get("payload_encoding") == "base64":
        return base64.b64decode(entry["payload"])
    return str(entry["payload"]).encode("utf-8")


@dataclass(frozen=True)
class DeadLetter:
    """A record the relay will not retry: why, where it failed, and its original payload."""

    id: str
    reason: str
    stage: str  # "decode" (not parseable), "contract" (fails validation), "audit" (PostgreSQL refused it)
    payload: bytes
    dead_lettered_at: float
    sqlstate: str | None = None
    flow_id: str | None = None
    symbol: str | None = None
    pattern: str | None = None
    published: bool = False  # True when the audit row was refused after the event went out (backlog)
    raw: bytes = b""  # the stored entry, which identifies it for requeue

    def to_json(self) -> dict[str, Any]:
        """For `tickstockpl deadletters --json`."""
        body = json.loads(self.raw) if self.raw else {}
        body.pop("payload_encoding", None)
        body["payload"] = payload_fields(self.payload)["payload"]
        body["payload_encoding"] = payload_fields(self.payload)["payload_encoding"]
        return body


def dead_letter_entry(
    payload: bytes,
    reason: str,
    stage: str,
    *,
    sqlstate: str | None = None,
    event: Mapping[str, Any] | None = None,
    published: bool = False,
    now: float | None = None,
) -> bytes:
    """The JSON entry stored in KEY_DEAD_LETTERS for one poison record."""
    entry: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "reason": reason,
        "stage": stage,
        "sqlstate": sqlstate,
        "dead_lettered_at": time.time() if now is None else now,
        "published": published,
    }
    data = event.get("data") if event is not None else None
    if isinstance(data, Mapping):
        for key in ("flow_id", "symbol", "pattern"):
            if isinstance(data.get(key), str):
                entry[key] = data[key]
    entry.update(payload_fields(payload))
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _parse_dead_letter(raw: bytes) -> DeadLetter:
    try:
        entry = json.loads(raw)
        return DeadLetter(
            id=str(entry["id"]),
            reason=str(entry["reason"]),
            stage=str(entry["stage"]),
            payload=payload_bytes(entry),
            dead_lettered_at=float(entry["dead_lettered_at"]),
            sqlstate=entry.get("sqlstate"),
            flow_id=entry.get("flow_id"),
            symbol=entry.get("symbol"),
            pattern=entry.get("pattern"),
            published=bool(entry.get("published", False)),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError) as exc:  # written by hand or by another version
        digest = hashlib.sha1(raw).hexdigest()[:12]
        return DeadLetter(digest, f"unreadable dead-letter entry: {exc}", "unknown", raw, 0.0, raw=raw)


def dead_letters(client: redis.Redis, limit: int = 0) -> list[DeadLetter]:
    """The dead letters, newest first (all of them when `limit` is 0)."""
    with redis_errors("cannot read the dead letters"):
        raws = client.lrange(contract.KEY_DEAD_LETTERS, 0, limit - 1 if limit > 0 else -1)
    return [_parse_dead_letter(as_bytes(raw)) for raw in raws]


def requeue_dead_letter(client: redis.Redis, letter_id: str) -> DeadLetter | None:
    """Put a dead letter's original payload back on the outbox (next in line); None if not found.

    For after a fix (the schema, the function, a grant): the record goes through the whole relay
    again, validation included, so one that is still bad comes back here with its reason.
    """
    for letter in dead_letters(client):
        if letter.id == letter_id:
            script = client.register_script(_REQUEUE_LUA)
            with redis_errors("cannot requeue"):
                moved = script(
                    keys=[contract.KEY_DEAD_LETTERS, contract.KEY_OUTBOX], args=[letter.raw, letter.payload]
                )
            return letter if moved else None
    return None


def add(
    done: Finish,
    payload: bytes,
    reason: str,
    stage: str,
    *,
    sqlstate: str | None = None,
    event: Any = None,
    published: bool = False,
) -> None:
    """File a poison record with the batch's finish, and count it (in total and by pattern)."""
    log.warning("dead letter (%s): %s", stage, reason)
    entry = dead_letter_entry(payload, reason, stage, sqlstate=sqlstate, event=event, published=published)
    done.dead_letters.append(entry)
    done.count(contract.STAT_DEAD_LETTERED)
    pattern = event["data"].get("pattern") if isinstance(event, dict) else None
    done.count(
        contract.stat_field(contract.STAT_DEAD_LETTERED, pattern if isinstance(pattern, str) else "unknown")
    )
