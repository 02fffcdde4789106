"""Our small error hierarchy. Driver errors (redis, psycopg2) are wrapped at the boundary into these,
so callers catch our errors and never the driver's."""

from __future__ import annotations


class TickStockPLError(Exception):
    """Base of every error the producer raises on purpose."""


class StoreUnavailable(TickStockPLError):
    """Redis or PostgreSQL cannot be reached right now; retrying later may succeed."""


class RedisUnavailable(StoreUnavailable):
    """Redis refused the connection, timed out or went away."""


class PostgresUnavailable(StoreUnavailable):
    """PostgreSQL refused the connection, timed out or went away."""


class AuditConfigError(TickStockPLError):
    """The audit database answers but cannot take our rows: wrong password, missing function or grant."""


class AuditDataError(TickStockPLError):
    """PostgreSQL rejected a row for what it holds (SQLSTATE class 22: too long, overflow, bad UUID)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class RedisConfigError(TickStockPLError):
    """Redis answers but refuses us (wrong password, ACL): an operator must act, retrying will not help."""
