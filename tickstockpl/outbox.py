"""The local Redis list between the detector and the relay (the outbox), and the relay's lists.

The detector LPUSHes validated events; the relay moves them on. An invalid event never enters
the outbox: it is rejected here, by the contract, with the field named. The relay side (below
`enqueue`) is the atomic move into the processing list, the ack, the dead letters and the audit
backlog: every list operation the relay makes lives here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import redis

from tickstockpl import contract
from tickstockpl.stores import redis_errors


def enqueue(client: redis.Redis, events: Iterable[Mapping[str, Any]]) -> int:
    """Validate and push pattern events onto the outbox in one round trip; return how many.

    Also counts them in the stack-wide stats hash (patterns_detected, last_pattern_time), which the
    heartbeat reports. Raises ContractError (nothing is pushed), RedisUnavailable or RedisConfigError.
    """
    payloads = [contract.encode(contract.validate_pattern_event(dict(event))) for event in events]
    if not payloads:
        return 0
    pipe = client.pipeline(transaction=True)
    pipe.lpush(contract.KEY_OUTBOX, *payloads)
    pipe.hincrby(contract.KEY_STATS, "patterns_detected", len(payloads))
    pipe.hset(contract.KEY_STATS, "last_pattern_time", repr(time.time()))
    with redis_errors(f"cannot enqueue {len(payloads)} pattern(s)"):
        pipe.execute()
    return len(payloads)


# --- Decoding a record in the relay ---------------------------------------------------------------
# The relay must validate every record, since anything can LPUSH onto the outbox, but the contract's
# validator (stdlib json plus a general walk) was over half of the relay's CPU per row. Most records
# are flat events that `enqueue` wrote: for those, orjson plus the narrow check below proves what the
# full validator would conclude, at a fraction of the cost. Anything else (a nested value, a long
# number, anything orjson refuses, anything the narrow check does not vouch for) takes the full,
# unchanged path, which also gives poison its reason. The narrow check only ever says "certainly
# valid" or "ask the contract": it never rejects a record by itself.

# orjson turns an integer literal beyond 64 bits (below -2**63 or above 2**64 - 1) into a float,
# where json keeps an int; so a float this large or larger takes the stdlib path. It also bounds
# every float, so the comparison doubles as the finiteness check (NaN compares false).
_BIG_FLOAT = 9.2e18  # just under 2**63
# str(uuid.UUID(v)) == v and version 4 (which needs the RFC 4122 variant: 8, 9, a or b).
_FLOW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_NOT_FLAT = ("data", "indicators")  # keys the contract wants absent or an object: the full path decides
_MAX_KEY_LEN = 200  # the contract's limit on an object key
_MAX_TEXT_LEN = 10_000  # the contract's limit on an extra text field
_CHECKED_KEYS: set[str] = set()  # data keys already found to be plain text; a handful in practice
_MAX_CHECKED_KEYS = 1_000
# Every confidence the contract accepts: in [0, 1] with at most CONFIDENCE_DECIMALS decimals, i.e.
# round(c, 2) == c. Those are exactly the floats nearest to k / 100, a set lookup cheaper than round().
_CONFIDENCES = frozenset(
    c
    for c in (k / 10**contract.CONFIDENCE_DECIMALS for k in range(10**contract.CONFIDENCE_DECIMALS + 1))
    if round(c, contract.CONFIDENCE_DECIMALS) == c
)


def decode_record(payload: bytes) -> dict[str, Any]:
    """Parse and validate one outbox record: what `contract.decode_pattern_event` returns or raises.

    The fast path (orjson and `_plainly_valid`) accepts only records the full validator accepts, with
    an equal result; tests/integration/test_relay_decode.py checks both directions.
    """
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        event = None
    if event is not None and _plainly_valid(event):
        return event
    return contract.decode_pattern_event(payload)


def _plain_text(value: object, limit: int) -> bool:
    """What contract._check_text accepts, for a string orjson produced (never a lone surrogate)."""
    return type(value) is str and 0 < len(value) <= limit and "\x00" not in value and bool(value.strip())


def _plain_key(key: object) -> bool:
    if key in _CHECKED_KEYS:
        return True
    if not _plain_text(key, _MAX_KEY_LEN):
        return False
    if len(_CHECKED_KEYS) >= _MAX_CHECKED_KEYS:
        _CHECKED_KEYS.clear()
    _CHECKED_KEYS.add(key)  # type: ignore[arg-type]
    return True


def _plainly_valid(event: object) -> bool:
    """True only for a flat event that `contract.validate_pattern_event` certainly accepts.

    Flat: every value in `data` is text, a number, a bool or null (no objects or arrays, so no
    `indicators` either). False means "not vouched for", not "invalid". One function with the
    checks inline: the relay runs it for every record, and Python's calls cost more than the checks.
    """
    if type(event) is not dict or len(event) != 4:
        return False
    stamp, data = event.get("timestamp"), event.get("data")
    if (
        type(data) is not dict
        or type(stamp) is not float
        or not -_BIG_FLOAT < stamp < _BIG_FLOAT
        or event.get("event_type") != contract.EVENT_PATTERN_DETECTED
        or event.get("source") != contract.SOURCE_SYSTEM
    ):
        return False
    symbol, pattern, flow_id = data.get("symbol"), data.get("pattern"), data.get("flow_id")
    if (
        type(symbol) is not str
        or not 0 < len(symbol) <= contract.MAX_SYMBOL_LEN
        or type(pattern) is not str
        or not 0 < len(pattern) <= contract.MAX_PATTERN_LEN
        or type(data.get("confidence")) is not float
        or data["confidence"] not in _CONFIDENCES
        or type(flow_id) is not str
        or _FLOW_ID.fullmatch(flow_id) is None
    ):
        return False
    # Every key plain text; every value a number (floats below _BIG_FLOAT), plain text (symbol and
    # pattern included, whose lengths are checked above), a bool or null.
    for key, value in data.items():
        if (key not in _CHECKED_KEYS and not _plain_key(key)) or key in _NOT_FLAT:
            return False
        kind = type(value)
        if kind is float:
            if not -_BIG_FLOAT < value < _BIG_FLOAT:
                return False
        elif key in contract.NUMERIC_DATA_FIELDS:
            if kind is not int:  # a bool, text or null where the contract wants a number
                return False
        elif kind is str:
            if value and (len(value) > _MAX_TEXT_LEN or "\x00" in value or not value.strip()):
                return False
        elif kind not in (int, bool, type(None)):
            return False
    return _plain_relations(data)


def _plain_relations(data: dict[str, Any]) -> bool:
    """pattern_name, expires_at, tier and source, as the contract relates them."""
    if "pattern_name" in data and data["pattern_name"] != data["pattern"]:
        return False
    if "expires_at" in data and "timestamp" in data and not data["expires_at"] > data["timestamp"]:
        return False
    if ("tier" in data) != ("source" in data):
        return False
    return "tier" not in data or (data["tier"] in contract.TIERS and data["source"] == data["tier"])


# --- The relay side -------------------------------------------------------------------------------
# The detector LPUSHes, so the oldest record sits at the right end. The relay moves records from the
# right of the outbox onto the left of the processing list and removes them only after their audit
# row and publish are done (rq's reliable-queue pattern): a crash leaves them in the processing list,
# where recovery finds them. In the processing list a batch therefore sits newest-first.

# Move up to ARGV[1] records in one atomic step (LMPOP in a script: a MULTI cannot feed LMPOP's reply
# to LPUSH). Returns them oldest first. unpack() has a stack limit, hence the chunks.
_MOVE_LUA = """
local popped = redis.call('LMPOP', 1, KEYS[1], 'RIGHT', 'COUNT', ARGV[1])
if not popped then return {} end
local items = popped[2]
for i = 1, #items, 1000 do
    redis.call('LPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
end
return items
"""
# Finish a batch in one script call (one round trip; a pipelined MULTI with a script costs redis-py an
# extra SCRIPT EXISTS each time): push its dead letters and deferred audit rows, bump the counters, and
# last remove the batch from its list, so that a failure part-way leaves the batch to be done again.
# The batch (oldest first) sat in the list newest-first: normally the whole tail (the oldest batch in
# flight) or the head, so one LTRIM removes it; anything else (a stale entry among others) falls back
# to one LREM per record.
# KEYS: source list, dead letters, audit backlog, stats hash.
# ARGV: six counts (batch, dead letters, backlog, counters, floats, values), then those items in that
# order; counters, floats and values are name/value pairs.
_FINISH_LUA = """
local count = {}
for i = 1, 6 do count[i] = tonumber(ARGV[i]) end
local at = 7
local batch = {}
for i = 1, count[1] do batch[i] = ARGV[at + i - 1] end
at = at + count[1]
local function push(key, n)
    for i = at, at + n - 1, 1000 do
        redis.call('LPUSH', key, unpack(ARGV, i, math.min(i + 999, at + n - 1)))
    end
    at = at + n
end
push(KEYS[2], count[2])
push(KEYS[3], count[3])
local commands = {'HINCRBY', 'HINCRBYFLOAT', 'HSET'}
for c = 1, 3 do
    for _ = 1, count[3 + c] do
        redis.call(commands[c], KEYS[4], ARGV[at], ARGV[at + 1])
        at = at + 2
    end
end
local n = count[1]
if n == 0 then return 0 end
local function matches(items)
    if #items ~= n then return false end
    for i = 1, n do
        if items[i] ~= batch[n - i + 1] then return false end
    end
    return true
end
if matches(redis.call('LRANGE', KEYS[1], -n, -1)) then
    redis.call('LTRIM', KEYS[1], 0, -n - 1)
    return n
end
if matches(redis.call('LRANGE', KEYS[1], 0, n - 1)) then
    redis.call('LTRIM', KEYS[1], n, -1)
    return n
end
local removed = 0
for i = 1, n do
    removed = removed + redis.call('LREM', KEYS[1], -1, batch[i])
end
return removed
"""
# Requeue one dead letter: only if it is still there, so two operators cannot requeue it twice.
_REQUEUE_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[2])
    return 1
end
return 0
"""


@dataclass(frozen=True)
class LuaScript:
    """A Lua script and its SHA1, computed once (redis-py's Script hashes it again on every call)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode("utf-8")).hexdigest())


MOVE_SCRIPT = LuaScript(_MOVE_LUA)
FINISH_SCRIPT = LuaScript(_FINISH_LUA)


@contextmanager
def _connection(client: redis.Redis) -> Iterator[redis.connection.AbstractConnection]:
    """One pooled connection for a command or two sent by hand (see `run_script`).

    Any error drops the connection: a reply left unread (the second of a pipelined pair) must never
    reach the next command.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        yield conn
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


def _evalsha(
    conn: redis.connection.AbstractConnection, script: LuaScript, keys: Sequence[str], args: Sequence[Any]
) -> Any:
    try:
        conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return conn.read_response()
    except redis.exceptions.NoScriptError:  # EVAL runs it and caches it for the next EVALSHA
        conn.send_command("EVAL", script.source, len(keys), *keys, *args)
        return conn.read_response()


def run_script(client: redis.Redis, script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """EVALSHA straight on a pooled connection: the relay's per-batch script calls.

    redis-py's command path (retry wrapper, metrics hooks, Script object) costs about 30 µs of CPU
    a call on top of the 35 of the round trip itself, and a small batch makes three such calls.
    The connection disconnects itself on any I/O error, as it does under redis-py's own path; the
    caller turns RedisError into RedisUnavailable. The reply is the raw one (no response callback).
    """
    return run_scripts(client, [ScriptCall(script, keys, args)])[0]


class ScriptCall(NamedTuple):
    script: LuaScript
    keys: Sequence[str]
    args: Sequence[Any]


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """`run_script` for several calls, pipelined on one connection: one round trip, replies in order.

    A call that finds its script gone (Redis restarted) did not run; it is sent again as EVAL, after
    the others, which run independently of each other.
    """
    commands = [("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args) for call in calls]
    with _connection(client) as conn:
        conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        missing: list[int] = []
        for index in range(len(calls)):
            try:
                replies.append(conn.read_response())
            except redis.exceptions.NoScriptError:
                replies.append(None)
                missing.append(index)
        for index in missing:
            script, keys, args = calls[index]
            conn.send_command("EVAL", script.source, len(keys), *keys, *args)
            replies[index] = conn.read_response()
        return replies


def move_call(max_count: int) -> ScriptCall:
    """The move of `take`, without the wait, for a caller that pipelines it behind other calls."""
    return ScriptCall(MOVE_SCRIPT, (contract.KEY_OUTBOX, contract.KEY_PROCESSING), (max_count,))


def moved_records(reply: Sequence[bytes | str]) -> list[bytes]:
    """The records a move returned, oldest first."""
    return [_as_bytes(item) for item in reply]


def _as_bytes(item: bytes | str) -> bytes:
    return item if isinstance(item, bytes) else item.encode("utf-8")


def take(client: redis.Redis, max_count: int, *, block_s: float = 0.0) -> list[bytes]:
    """Atomically move up to `max_count` records from the outbox into the processing list.

    Returns them oldest first. With `block_s`, waits that long (BLMOVE) for the first record when
    the outbox is empty, and the move script, pipelined behind it on the same connection (one round
    trip), takes whatever else is there once BLMOVE returns.
    """
    keys = (contract.KEY_OUTBOX, contract.KEY_PROCESSING)
    with redis_errors("cannot take from the outbox"), _connection(client) as conn:
        if block_s <= 0:
            return [_as_bytes(item) for item in _evalsha(conn, MOVE_SCRIPT, keys, (max_count,))]
        blmove = ("BLMOVE", *keys, "RIGHT", "LEFT", block_s)
        if max_count <= 1:
            conn.send_command(*blmove)
            moved = conn.read_response()
            return [] if moved is None else [_as_bytes(moved)]
        evalsha = ("EVALSHA", MOVE_SCRIPT.sha, len(keys), *keys, max_count - 1)
        conn.send_packed_command(conn.pack_commands([blmove, evalsha]))
        moved = conn.read_response()
        try:
            rest = conn.read_response()
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            rest = _evalsha(conn, MOVE_SCRIPT, keys, (max_count - 1,))
        first = [] if moved is None else [_as_bytes(moved)]
        return first + [_as_bytes(item) for item in rest]


def processing(client: redis.Redis) -> list[bytes]:
    """Every record in the processing list, oldest first (what a crashed relay left behind)."""
    with redis_errors("cannot read the processing list"):
        return [_as_bytes(item) for item in reversed(client.lrange(contract.KEY_PROCESSING, 0, -1))]


def oldest(client: redis.Redis, key: str, max_count: int) -> list[bytes]:
    """Up to `max_count` entries from the old end of a newest-first list, oldest first (a peek)."""
    with redis_errors(f"cannot read {key}"):
        return [_as_bytes(item) for item in reversed(client.lrange(key, -max_count, -1))]


def length(client: redis.Redis, key: str) -> int:
    with redis_errors(f"cannot read {key}"):
        return int(client.llen(key))


@dataclass
class Finish:
    """Everything that happens when a batch is done, applied in one MULTI/EXEC.

    Either all of it happens (dead letters stored, deferred audit rows queued, counters bumped,
    records removed from `source`) or none of it does, and recovery processes the batch again.
    """

    source: str  # the list the batch came from: KEY_PROCESSING, or KEY_AUDIT_BACKLOG
    batch: Sequence[bytes]  # as taken, oldest first
    dead_letters: list[bytes] = field(default_factory=list)
    backlog: list[bytes] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    floats: dict[str, float] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a KEY_STATS counter (an amount of 0 still creates it, so readers see 0)."""
        self.counters[name] = self.counters.get(name, 0) + amount

    @classmethod
    def merged(cls, parts: Sequence[Finish]) -> Finish:
        """Consecutive batches of one list, oldest first, as one Finish: one script call for all.

        Their records sit next to each other in the list, so the removal is still one LTRIM.
        """
        if len({part.source for part in parts}) != 1:
            raise ValueError("only batches of one list can be finished together")
        whole = cls(parts[0].source, [record for part in parts for record in part.batch])
        for part in parts:
            whole.dead_letters += part.dead_letters
            whole.backlog += part.backlog
            for name, amount in part.counters.items():
                whole.count(name, amount)
            for name, value in part.floats.items():
                whole.floats[name] = whole.floats.get(name, 0.0) + value
            whole.values.update(part.values)  # later batches win (last_publish_time)
        return whole


def finish(client: redis.Redis, done: Finish) -> None:
    """Apply a Finish in one atomic script call (see the class and _FINISH_LUA)."""
    pairs: list[str | float | int] = []
    for mapping in (done.counters, done.floats, done.values):
        for name, value in mapping.items():
            pairs += [name, value]
    counts = [len(done.batch), len(done.dead_letters), len(done.backlog)]
    counts += [len(done.counters), len(done.floats), len(done.values)]
    args = [*counts, *done.batch, *done.dead_letters, *done.backlog, *pairs]
    keys = [done.source, contract.KEY_DEAD_LETTERS, contract.KEY_AUDIT_BACKLOG, contract.KEY_STATS]
    with redis_errors(f"cannot finish a batch of {len(done.batch)}"):
        run_script(client, FINISH_SCRIPT, keys, args)


# --- Dead letters and the audit backlog: JSON entries --------------------------------------------


def _payload_fields(payload: bytes) -> dict[str, str]:
    """The original bytes, kept exactly: as text when they are UTF-8, else base64."""
    try:
        return {"payload": payload.decode("utf-8"), "payload_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "payload_encoding": "base64"}


def _payload_bytes(entry: Mapping[str, Any]) -> bytes:
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
        body["payload"] = _payload_fields(self.payload)["payload"]
        body["payload_encoding"] = _payload_fields(self.payload)["payload_encoding"]
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
    entry.update(_payload_fields(payload))
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _parse_dead_letter(raw: bytes) -> DeadLetter:
    try:
        entry = json.loads(raw)
        return DeadLetter(
            id=str(entry["id"]),
            reason=str(entry["reason"]),
            stage=str(entry["stage"]),
            payload=_payload_bytes(entry),
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
    return [_parse_dead_letter(_as_bytes(raw)) for raw in raws]


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


def backlog_entry(payload: bytes, *, published_at: float, reason: str) -> bytes:
    """A KEY_AUDIT_BACKLOG entry: a published record whose audit row is still to be written."""
    entry = {"published_at": published_at, "reason": reason, **_payload_fields(payload)}
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_backlog_entry(raw: bytes) -> tuple[bytes, float, str]:
    """(original payload, publish time, why the row was deferred); ValueError if unreadable."""
    try:
        entry = json.loads(raw)
        published_at = float(entry["published_at"])
        if not math.isfinite(published_at):  # it becomes a number in the row's details
            raise ValueError(f"published_at is {published_at}")
        return _payload_bytes(entry), published_at, str(entry.get("reason", ""))
    except (KeyError, TypeError, UnicodeDecodeError, binascii.Error) as exc:
        raise ValueError(f"unreadable audit backlog entry: {exc}") from None
