"""Who we are on the wire and where we speak: identity, channels, Redis keys, audit checkpoints.

Taken from the consumer's own code (shared/contract/CONSUMER_CONTRACT.md); nobody spells one elsewhere.
"""

from __future__ import annotations

from typing import Final

# --- Identity -------------------------------------------------------------------------------------
SOURCE_SYSTEM: Final = "TickStockPL"  # source / source_system on every message and audit row
EVENT_PATTERN_DETECTED: Final = "pattern_detected"
EVENT_HEARTBEAT: Final = "heartbeat"  # PRODUCER_ALIVE rows only: the consumer times these 50-70 s apart
EVENT_PRODUCER_STARTED: Final = "producer_started"  # the startup row: kept out of the heartbeat cadence
EVENT_SYSTEM_HEALTH: Final = "system_health"
EVENT_BACKTEST_PROGRESS: Final = "backtest_progress"
EVENT_BACKTEST_RESULT: Final = "backtest_result"

# --- Channels the consumer subscribes to (§2.1) -----------------------------------------------------
CHANNEL_PATTERNS: Final = "tickstock.events.patterns"
CHANNEL_BACKTEST_PROGRESS: Final = "tickstock.events.backtesting.progress"
CHANNEL_BACKTEST_RESULTS: Final = "tickstock.events.backtesting.results"
CHANNEL_HEALTH: Final = "tickstock.health.status"
PRODUCER_CHANNELS: Final = (
    CHANNEL_PATTERNS,
    CHANNEL_BACKTEST_PROGRESS,
    CHANNEL_BACKTEST_RESULTS,
    CHANNEL_HEALTH,
)

# --- Channels the consumer publishes to us (§3) -----------------------------------------------------
CHANNEL_BACKTEST_JOBS: Final = "tickstock.jobs.backtest"
CHANNEL_BACKTEST_CANCEL: Final = "tickstock.jobs.cancel"
CHANNEL_RAW_TICKS: Final = "tickstock.data.raw"

# --- Redis keys ------------------------------------------------------------------------------------
# Read by the consumer with float(): epoch seconds as a float string, refreshed every <= 20 s (§5.1).
KEY_HEARTBEAT: Final = "tickstock:producer:heartbeat"
# The consumer's admin page checks that this one exists; same value (§5.2).
KEY_HEARTBEAT_ALIAS: Final = "tickstockpl:heartbeat"
# Everything the producer owns lives under this prefix, never under the consumer's tickstock:patterns:*.
PRODUCER_PREFIX: Final = "tickstockpl:"
KEY_OUTBOX: Final = PRODUCER_PREFIX + "outbox"  # detector LPUSHes, relay moves from the right
KEY_PROCESSING: Final = PRODUCER_PREFIX + "outbox:processing"  # records in flight in the relay
KEY_DEAD_LETTERS: Final = PRODUCER_PREFIX + "deadletters"  # poison records with their reason
KEY_AUDIT_BACKLOG: Final = PRODUCER_PREFIX + "audit:backlog"  # published, audit row still to write
KEY_REPLAY_STREAM: Final = PRODUCER_PREFIX + "stream:patterns"  # bounded replay for late consumers
KEY_STATS: Final = PRODUCER_PREFIX + "stats"  # hash of stack-wide counters (patterns_detected, ...)
KEY_BACKTEST_QUEUE: Final = PRODUCER_PREFIX + "backtest:queue"
KEY_BACKTEST_RUNNING: Final = PRODUCER_PREFIX + "backtest:running"
KEY_HEALTH: Final = PRODUCER_PREFIX + "health"  # the latest system_health event (JSON), TTL as heartbeat
KEY_HEALTH_CHANGES: Final = PRODUCER_PREFIX + "health:changes"  # recent status changes, newest first
# Epoch seconds of the last PRODUCER_ALIVE row: a restarted heartbeat continues the 60 s schedule from
# it (the audit role cannot read the table back). TTL two row intervals.
KEY_LAST_ALIVE_ROW: Final = PRODUCER_PREFIX + "heartbeat:last_alive_row"

# Appendix B item 11: the key is < 30 s old at every sample (the consumer's 30 s fallback check).
HEARTBEAT_MAX_AGE_S: Final = 30.0
# Consumer-owned keys the producer never writes (§5.3): tickstock:patterns:*, tickstock:indexes:*,
# tickstock:api_cache:*, tickstock:jobs:*, tickstock:user_jobs:*, tickstock:active_jobs and
# tickstock:alerts:*. Every producer key starts with PRODUCER_PREFIX, apart from KEY_HEARTBEAT.

# --- integration_events checkpoints (§2.3, §4.6) ---------------------------------------------------
CHECKPOINT_PATTERN_PUBLISHED: Final = "PATTERN_PUBLISHED"
CHECKPOINT_PRODUCER_ALIVE: Final = "PRODUCER_ALIVE"
CHECKPOINT_PRODUCER_STARTED: Final = "PRODUCER_STARTED"
CHECKPOINT_EVENT_RECEIVED: Final = "EVENT_RECEIVED"  # written by the consumer
CHECKPOINT_EVENT_PARSED: Final = "EVENT_PARSED"  # written by the consumer
CONSUMER_SOURCE_SYSTEM: Final = "TickStockAppV2"
