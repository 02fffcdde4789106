"""Lua scripts sent as EVALSHA straight on a pooled connection: the relay's per-batch calls.

redis-py's command path (retry wrapper, metrics hooks, a Script object that hashes the script again)
costs about 30 µs of CPU a call on top of the round trip, and a small batch makes three such calls.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import redis


@dataclass(frozen=True)
class LuaScript:
    """A Lua script and its SHA1, computed once (redis-py's Script hashes it again on every call)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode("utf-8")).hexdigest())


_POOLS_NEEDING_A_NAME: dict[type[redis.ConnectionPool], tuple[str, ...]] = {}


def _command_name(pool_type: type[redis.ConnectionPool]) -> tuple[str, ...]:
    """The argument `get_connection` wants: redis-py before 5.3 requires a command name (any will
    do), 5.3 and later deprecate it. Looked up once per pool class."""
    name = _POOLS_NEEDING_A_NAME.get(pool_type)
    if name is None:
        parameter = inspect.signature(pool_type.get_connection).parameters.get("command_name")
        required = parameter is not None and parameter.default is inspect.Parameter.empty
        name = _POOLS_NEEDING_A_NAME[pool_type] = ("EVALSHA",) if required else ()
    return name


@contextmanager
def connection(client: redis.Redis) -> Iterator[redis.connection.AbstractConnection]:
    """One pooled connection for a command or two sent by hand (see `run_script`).

    Any error drops the connection: a reply left unread (the second of a pipelined pair) must never
    reach the next command.
    """
    pool = client.connection_pool
    conn = pool.get_connection(*_command_name(type(pool)))
    try:
        yield conn
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


def evalsha(
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
    with connection(client) as conn:
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
