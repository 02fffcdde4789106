"""The relay's lists and their Lua scripts: the move into the processing list, and the atomic finish.

The detector LPUSHes, so the oldest record sits at the right end. The relay moves records from the
right of the outbox onto the left of the processing list and removes them only after their audit
row and publish are done (rq's reliable-queue pattern): a crash leaves them in the processing list,
where recovery finds them. In the processing list a batch therefore sits newest-first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from tickstockpl import contract
from tickstockpl.relay.scripts import LuaScript, ScriptCall, connection, evalsha, run_script
from tickstockpl.stores import redis_errors

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

MOVE_SCRIPT = LuaScript(_MOVE_LUA)
FINISH_SCRIPT = LuaScript(_FINISH_LUA)


def move_call(max_count: int) -> ScriptCall:
    """The move of `take`, without the wait, for a caller that pipelines it behind other calls."""
    return ScriptCall(MOVE_SCRIPT, (contract.KEY_OUTBOX, contract.KEY_PROCESSING), (max_count,))


def moved_records(reply: Sequence[bytes | str]) -> list[bytes]:
    """The records a move returned, oldest first."""
    return [as_bytes(item) for item in reply]


def as_bytes(item: bytes | str) -> bytes:
    return item if isinstance(item, bytes) else item.encode("utf-8")


def take(client: redis.Redis, max_count: int, *, block_s: float = 0.0) -> list[bytes]:
    """Atomically move up to `max_count` records from the outbox into the processing list.

    Returns them oldest first. With `block_s`, waits that long (BLMOVE) for the first record when
    the outbox is empty, and the move script, pipelined behind it on the same connection (one round
    trip), takes whatever else is there once BLMOVE returns.
    """
    keys = (contract.KEY_OUTBOX, contract.KEY_PROCESSING)
    with redis_errors("cannot take from the outbox"), connection(client) as conn:
        if block_s <= 0:
            return [as_bytes(item) for item in evalsha(conn, MOVE_SCRIPT, keys, (max_count,))]
        blmove = ("BLMOVE", *keys, "RIGHT", "LEFT", block_s)
        if max_count <= 1:
            conn.send_command(*blmove)
            moved = conn.read_response()
            return [] if moved is None else [as_bytes(moved)]
        move_rest = ("EVALSHA", MOVE_SCRIPT.sha, len(keys), *keys, max_count - 1)
        conn.send_packed_command(conn.pack_commands([blmove, move_rest]))
        moved = conn.read_response()
        try:
            rest = conn.read_response()
        except redis.exceptions.NoScriptError:  # Redis restarted or flushed its scripts
            rest = evalsha(conn, MOVE_SCRIPT, keys, (max_count - 1,))
        first = [] if moved is None else [as_bytes(moved)]
        return first + [as_bytes(item) for item in rest]


def processing(client: redis.Redis) -> list[bytes]:
    """Every record in the processing list, oldest first (what a crashed relay left behind)."""
    with redis_errors("cannot read the processing list"):
        return [as_bytes(item) for item in reversed(client.lrange(contract.KEY_PROCESSING, 0, -1))]


def oldest(client: redis.Redis, key: str, max_count: int) -> list[bytes]:
    """Up to `max_count` entries from the old end of a newest-first list, oldest first (a peek)."""
    with redis_errors(f"cannot read {key}"):
        return [as_bytes(item) for item in reversed(client.lrange(key, -max_count, -1))]


def length(client: redis.Redis, key: str) -> int:
    with redis_errors(f"cannot read {key}"):
        return int(client.llen(key))


@dataclass
class Finish:
    """Everything that happens when a batch is done, applied in one atomic script call (_FINISH_LUA).

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
