"""The wire contract with TickStockAppV2: every channel, key, checkpoint name and field limit.

Everything here is taken from the consumer's own code (shared/contract/CONSUMER_CONTRACT.md).
Services import names from this module and never spell a channel or key themselves.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

from tickstockpl.errors import TickStockPLError

# --- Identity -------------------------------------------------------------------------------------
SOURCE_SYSTEM: Final = "TickStockPL"  # source / source_system on every message and audit row
EVENT_PATTERN_DETECTED: Final = "pattern_detected"
EVENT_HEARTBEAT: Final = "heartbeat"
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
# Fields of KEY_STATS, written by the processes and read by the heartbeat, doctor and exporter. A
# `..._BY` name is a prefix: the field `<prefix>:<label>` counts one pattern (or reason).
STAT_PATTERNS_DETECTED: Final = "patterns_detected"  # HINCRBY by outbox.enqueue
STAT_LAST_PATTERN_TIME: Final = "last_pattern_time"  # epoch seconds (float string), by outbox.enqueue
STAT_LAST_BAR_TIME: Final = "last_bar_time"  # epoch seconds of the detector's last accepted bar, if kept
STAT_STARTED_AT: Final = "started_at"  # when the running stack started: set by the heartbeat (see docs)
STAT_STOPPED_AT: Final = "stopped_at"  # when the heartbeat last stopped cleanly
STAT_DETECTED_BY: Final = "detected"  # detector: signals per pattern, before the confidence minimum
STAT_SIGNALS_BELOW_MIN_CONFIDENCE: Final = "signals_below_min_confidence"  # detector: held back
STAT_BARS_RECEIVED: Final = "bars_received"  # detector
STAT_BARS_REJECTED: Final = "bars_rejected"  # detector; also the prefix of the per-reason fields
STAT_PATTERNS_PUBLISHED: Final = "patterns_published"  # relay
STAT_PUBLISHED_BY: Final = "published"  # relay: per pattern
STAT_PUBLISHED_ZERO_SUBSCRIBERS: Final = "published_zero_subscribers"  # relay: PUBLISH reached no one
STAT_LAST_PUBLISH_TIME: Final = "last_publish_time"  # relay: epoch seconds (float string)
STAT_DEAD_LETTERED: Final = "dead_lettered"  # relay; also the prefix of the per-pattern fields
STAT_AUDIT_FAILURES: Final = "audit_failures"  # relay: audit writes (or WAL flushes) that failed
STAT_AUDIT_DEFERRED: Final = "audit_deferred"  # relay: rows moved to KEY_AUDIT_BACKLOG
STAT_AUDIT_BACKLOG_WRITTEN: Final = "audit_backlog_written"  # relay: deferred rows written later
STAT_RECOVERED: Final = "recovered"  # relay: records processed again after a crash or as stale
# Relay histograms: cumulative `<bucket prefix>:<le seconds>` counters (plus `:+Inf`) and a sum.
STAT_HISTOGRAM_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
STAT_LATENCY_BUCKET: Final = "latency_bucket"  # enqueue→publish per event (publish time - envelope timestamp)
STAT_LATENCY_SUM: Final = "latency_sum_s"
STAT_BATCH_BUCKET: Final = "batch_bucket"  # take→finish per batch
STAT_BATCH_SUM: Final = "batch_sum_s"


def stat_field(prefix: str, label: object) -> str:
    """A per-label field of KEY_STATS: `<prefix>:<label>` (a pattern, a reason, a bucket bound)."""
    return f"{prefix}:{label}"


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

# --- Column limits of integration_events (§4.1, §4.5) ----------------------------------------------
MAX_SYMBOL_LEN: Final = 20
MAX_PATTERN_LEN: Final = 50
CONFIDENCE_DECIMALS: Final = 2  # DECIMAL(3,2)
TIERS: Final = frozenset({"daily", "intraday", "combo"})
NUMERIC_DATA_FIELDS: Final = ("price_change", "current_price", "volume", "timestamp", "expires_at")

# The candlestick names TickStockAppV2's UI offers (§3.1); backtest jobs use them verbatim.
UI_CANDLESTICK_PATTERNS: Final = (
    "Doji",
    "Hammer",
    "ShootingStar",
    "Engulfing",
    "Harami",
    "MorningStar",
    "EveningStar",
    "ThreeWhiteSoldiers",
    "ThreeBlackCrows",
    "PiercingLine",
    "DarkCloudCover",
)
# The integration document's four named patterns.
REQUIREMENTS_PATTERNS: Final = ("Volume_Spike", "Price_Breakout", "Support_Test", "Resistance_Break")


class ContractError(TickStockPLError, ValueError):
    """A pattern event (or one of its fields) that the consumer would mis-handle."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _is_real_number(value: object) -> bool:
    # bool is an int subclass; numpy scalars are not int/float instances of the builtin types.
    return type(value) in (int, float)


def _check_number(field: str, value: object) -> float:
    if not _is_real_number(value):
        raise ContractError(field, f"must be a plain int or float, got {type(value).__name__}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise ContractError(field, f"is too large for a float ({len(str(value))} digits)") from None
    if not math.isfinite(number):
        raise ContractError(field, f"must be finite, got {value!r}")
    return number


def _check_text(field: str, value: object, limit: int) -> str:
    if type(value) is not str:
        raise ContractError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ContractError(field, "must not be empty")
    if len(value) > limit:
        raise ContractError(field, f"is {len(value)} characters, the limit is {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ContractError(field, "is not valid UTF-8 (lone surrogate)") from None
    if "\x00" in value:
        raise ContractError(field, "contains a NUL character, which PostgreSQL rejects")
    return value


def _check_flow_id(value: object) -> str:
    if type(value) is not str:
        raise ContractError("data.flow_id", f"must be a string, got {type(value).__name__}")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ContractError("data.flow_id", f"is not a UUID: {value!r}") from None
    if parsed.version != 4 or str(parsed) != value:
        raise ContractError("data.flow_id", f"must be a canonical lower-case UUID4, got {value!r}")
    return value


MAX_EXTRA_DEPTH: Final = 8  # extra fields are small, flat records; deeper nesting is a bug upstream


def _check_key(field: str, key: object) -> str:
    """Object keys reach PostgreSQL's jsonb and browsers too: text without NUL or lone surrogates."""
    if type(key) is not str:
        raise ContractError(field, f"object keys must be strings, got {type(key).__name__}")
    return _check_text(f"{field}.{key!r}", key, limit=200) if key else key


def _check_extra(field: str, value: object, depth: int = 0) -> None:
    """Extra fields travel to browsers as-is: plain JSON types only, nothing numpy, nothing NaN."""
    if depth > MAX_EXTRA_DEPTH:
        raise ContractError(field, f"is nested deeper than {MAX_EXTRA_DEPTH} levels")
    if value is None or type(value) is bool:
        return
    if type(value) is str:
        if value:
            _check_text(field, value, limit=10_000)
        return
    if _is_real_number(value):
        _check_number(field, value)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_extra(f"{field}.{_check_key(field, key)}", item, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_extra(f"{field}[{index}]", item, depth + 1)
        return
    raise ContractError(field, f"has type {type(value).__name__}, which is not plain JSON")


def round_confidence(value: object) -> float:
    """Confidence as the database stores it: a float in 0-1, rounded to 2 dp."""
    number = _check_number("data.confidence", value)
    if not 0.0 <= number <= 1.0:
        raise ContractError("data.confidence", f"must be within 0-1, got {number!r}")
    return round(number, CONFIDENCE_DECIMALS)


def validate_pattern_event(event: object) -> dict[str, Any]:
    """Check an event against Appendix B items 1-5 and 9; return it unchanged or raise ContractError."""
    if not isinstance(event, dict):
        raise ContractError("event", f"must be a JSON object, got {type(event).__name__}")
    expected = {"event_type", "source", "timestamp", "data"}
    if set(event) != expected:
        raise ContractError("event", f"envelope keys must be exactly {sorted(expected)}, got {sorted(event)}")
    if event["event_type"] != EVENT_PATTERN_DETECTED:
        raise ContractError("event_type", f"must be {EVENT_PATTERN_DETECTED!r}, got {event['event_type']!r}")
    if event["source"] != SOURCE_SYSTEM:
        raise ContractError("source", f"must be {SOURCE_SYSTEM!r}, got {event['source']!r}")
    if type(event["timestamp"]) is not float or not math.isfinite(event["timestamp"]):
        raise ContractError("timestamp", "must be a finite float of epoch seconds")
    _validate_data(event["data"])
    return event


def _validate_data(data: object) -> None:
    if not isinstance(data, dict):
        raise ContractError("data", f"must be an object, got {type(data).__name__}")
    if "data" in data:
        raise ContractError("data.data", "nested 'data' makes the consumer read the event as double-nested")
    for key in ("symbol", "pattern", "confidence", "flow_id"):
        if key not in data:
            raise ContractError(f"data.{key}", "is required")
    _check_text("data.symbol", data["symbol"], MAX_SYMBOL_LEN)
    _check_text("data.pattern", data["pattern"], MAX_PATTERN_LEN)
    if "pattern_name" in data and data["pattern_name"] != data["pattern"]:
        raise ContractError("data.pattern_name", "must equal data.pattern when sent")
    if type(data["confidence"]) is not float or round_confidence(data["confidence"]) != data["confidence"]:
        raise ContractError("data.confidence", "must be a float in 0-1 rounded to 2 dp")
    _check_flow_id(data["flow_id"])
    for key in NUMERIC_DATA_FIELDS:
        if key in data:
            _check_number(f"data.{key}", data[key])
    if "expires_at" in data and "timestamp" in data and not data["expires_at"] > data["timestamp"]:
        raise ContractError("data.expires_at", "must be later than data.timestamp")
    _validate_tier(data)
    if "indicators" in data:
        if not isinstance(data["indicators"], dict):
            raise ContractError("data.indicators", "must be an object")
        for key, value in data["indicators"].items():
            _check_number(f"data.indicators.{key}", value)
    for key, value in data.items():
        _check_extra(f"data.{_check_key('data', key)}", value)


def _validate_tier(data: Mapping[str, Any]) -> None:
    if ("tier" in data) != ("source" in data):
        raise ContractError("data.tier", "tier and source must be sent together")
    if "tier" in data:
        if data["tier"] not in TIERS:
            raise ContractError("data.tier", f"must be one of {sorted(TIERS)}, got {data['tier']!r}")
        if data["source"] != data["tier"]:
            raise ContractError("data.source", f"must equal data.tier ({data['tier']!r})")


def build_pattern_event(
    *,
    symbol: str,
    pattern: str,
    confidence: float,
    flow_id: str | None = None,
    tier: str | None = None,
    price_change: float | None = None,
    current_price: float | None = None,
    volume: float | None = None,
    detected_at: float | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Build the exact envelope the consumer parses (single nesting, `pattern`, UUID4 flow_id).

    `detected_at` becomes `data.timestamp` (the bar close, epoch seconds); `tier` is sent as both
    `tier` and `source`, since browsers read one and the consumer's cache the other.
    Raises ContractError naming the field when any input is out of contract.
    """
    data: dict[str, Any] = {
        "symbol": symbol,
        "pattern": pattern,
        "confidence": round_confidence(confidence),
        "flow_id": flow_id if flow_id is not None else str(uuid.uuid4()),
    }
    optional = {
        "price_change": price_change,
        "current_price": current_price,
        "volume": volume,
        "timestamp": detected_at,
    }
    for key, value in optional.items():
        if value is not None:
            data[key] = float(_check_number(f"data.{key}", value)) if key != "volume" else value
    if tier is not None:
        data["tier"] = tier
        data["source"] = tier
    for key, value in (extra or {}).items():
        if key in data or key == "data":
            raise ContractError(f"data.{key}", "extra field collides with a contract field")
        data[key] = value
    event = {
        "event_type": EVENT_PATTERN_DETECTED,
        "source": SOURCE_SYSTEM,
        "timestamp": float(time.time() if now is None else now),
        "data": data,
    }
    return validate_pattern_event(event)


def encode(message: Mapping[str, Any]) -> str:
    """Serialize a message for the wire: UTF-8 JSON, NaN and Infinity refused."""
    try:
        return json.dumps(message, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except ValueError as exc:
        raise ContractError("event", f"cannot be serialized: {exc}") from None
    except TypeError as exc:
        raise ContractError("event", f"has a value JSON cannot carry: {exc}") from None


class BuiltPatternEvent(dict[str, Any]):
    """A pattern event that holds to the contract by construction: what the detector's event builder
    (`patterns.streaming.EventBuilder`) returns, property-tested equal to `validate_pattern_event`.

    `outbox.enqueue` encodes these without checking them again, so the check runs once on the way
    out; the relay's decode still guards against anything else on the outbox. Not to be changed
    after it is built.
    """


def decode_pattern_event(raw: str | bytes) -> dict[str, Any]:
    """Parse and validate one wire message; ContractError names what is wrong."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError("event", f"is not JSON: {exc}") from None
    return validate_pattern_event(message)


def consumer_view(message: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What TickStockAppV2's subscriber extracts: (symbol, pattern, confidence), per §2.3.

    Single nesting unless `data` holds a `data` key; `pattern` first, `pattern_name` as fallback;
    confidence defaults to 0. Used by tests to prove events survive the consumer's rules.
    """
    data = message.get("data", message)
    if isinstance(data, Mapping) and "data" in data:
        data = data["data"]
    if not isinstance(data, Mapping):
        return None, None, 0
    pattern = data.get("pattern") or data.get("pattern_name")
    return data.get("symbol"), pattern, data.get("confidence", 0)


def audit_details(event: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The `details` JSON of a PATTERN_PUBLISHED row: small, and enough to trace the event."""
    data = event["data"]
    details: dict[str, Any] = {"event_timestamp": event["timestamp"]}
    for key in ("tier", "timeframe", "direction", "current_price", "price_change"):
        if key in data:
            details[key] = data[key]
    details.update(extra)
    return details


# --- Backtest progress and results (§2.4, §3.1, Appendix B item 13) ---------------------------------
# Flat messages: the consumer reads job_id, progress, status and results at the TOP level.
BACKTEST_COMPLETED: Final = "completed"
BACKTEST_FAILED: Final = "failed"
BACKTEST_CANCELLED: Final = "cancelled"  # the consumer treats anything but completed as FAILED
BACKTEST_RUNNING: Final = "running"
BACKTEST_TERMINAL: Final = frozenset({BACKTEST_COMPLETED, BACKTEST_FAILED, BACKTEST_CANCELLED})
# The fields the UI reads from `results` (fractions, not percentages), sent even on failure.
BACKTEST_RESULT_FIELDS: Final = ("win_rate", "roi", "max_drawdown", "sharpe_ratio")
BACKTEST_MAX_SYMBOLS: Final = 50  # the consumer's own limit on a job (§3.1)
KEY_BACKTEST_CANCELS: Final = PRODUCER_PREFIX + "backtest:cancel:"  # + job_id: a cancel seen, kept 1 day
KEY_BACKTEST_DONE: Final = PRODUCER_PREFIX + "backtest:done:"  # + job_id: its one result was sent, 7 days


def _check_job_id(job_id: object) -> str:
    if type(job_id) is not str or not job_id.strip():
        raise ContractError("job_id", "must be a non-empty string (echoed unchanged, not a UUID)")
    return job_id


def build_backtest_progress(
    job_id: str,
    progress: float,
    *,
    current_symbol: str | None = None,
    estimated_completion: float | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A flat progress message: top-level job_id and a float progress clamped to 0-1."""
    value = _check_number("progress", progress)
    message: dict[str, Any] = {
        "event_type": EVENT_BACKTEST_PROGRESS,
        "source": SOURCE_SYSTEM,
        "timestamp": float(time.time() if now is None else now),
        "job_id": _check_job_id(job_id),
        "progress": min(1.0, max(0.0, value)),
        "status": BACKTEST_RUNNING,
    }
    if current_symbol is not None:
        message["current_symbol"] = current_symbol
    if estimated_completion is not None:
        message["estimated_completion"] = float(_check_number("estimated_completion", estimated_completion))
    message.update(extra or {})
    return validate_backtest_progress(message)


def build_backtest_result(
    job_id: str,
    status: str,
    results: Mapping[str, Any] | None = None,
    *,
    error: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A flat result message; `results` always carries the UI's four fields (0.0 when not computed)."""
    if status not in BACKTEST_TERMINAL:
        raise ContractError("status", f"must be one of {sorted(BACKTEST_TERMINAL)}, got {status!r}")
    body: dict[str, Any] = {name: 0.0 for name in BACKTEST_RESULT_FIELDS}
    body.update({"total_trades": 0, "winning_trades": 0})
    body.update(results or {})
    message: dict[str, Any] = {
        "event_type": EVENT_BACKTEST_RESULT,
        "source": SOURCE_SYSTEM,
        "timestamp": float(time.time() if now is None else now),
        "job_id": _check_job_id(job_id),
        "status": status,
        "results": body,
    }
    if error is not None:
        message["error"] = error
        body["error"] = error
    return validate_backtest_result(message)


def validate_backtest_progress(message: object) -> dict[str, Any]:
    """Check a progress message against §2.4 / Appendix B item 13; return it or raise ContractError."""
    if not isinstance(message, dict):
        raise ContractError("message", f"must be a JSON object, got {type(message).__name__}")
    _check_job_id(message.get("job_id"))
    progress = _check_number("progress", message.get("progress"))
    if not 0.0 <= progress <= 1.0:
        raise ContractError("progress", f"must be within 0-1, got {progress!r}")
    for key, value in message.items():
        _check_extra(key, value)
    return message


def validate_backtest_result(message: object) -> dict[str, Any]:
    """Check a result message against §2.4 / Appendix B item 13; return it or raise ContractError."""
    if not isinstance(message, dict):
        raise ContractError("message", f"must be a JSON object, got {type(message).__name__}")
    _check_job_id(message.get("job_id"))
    if message.get("status") not in BACKTEST_TERMINAL:
        raise ContractError("status", f"must be one of {sorted(BACKTEST_TERMINAL)}")
    results = message.get("results")
    if not isinstance(results, dict):
        raise ContractError("results", "must be an object")
    for name in BACKTEST_RESULT_FIELDS:
        _check_number(f"results.{name}", results.get(name))
    for name in ("win_rate", "max_drawdown"):
        if not 0.0 <= results[name] <= 1.0:
            raise ContractError(f"results.{name}", f"must be a fraction within 0-1, got {results[name]!r}")
    for key, value in message.items():
        _check_extra(key, value)
    return message


# --- Input limits: what the producer accepts from TickStockAppV2 (§3.1, §3.3) -----------------------
# Everything on these channels comes from another application and is checked against these limits by
# tickstockpl.inbound before it is queued, aggregated or logged. The consumer's own messages are far
# inside them (a job is < 2 KB, a tick < 1 KB).
MAX_TICK_BYTES: Final = 4_096  # one flat tick (§3.3); a bigger message is rejected unread
MAX_JOB_BYTES: Final = 65_536  # one backtest job (§3.1): 50 symbols and a few patterns fit in 2 KB
MAX_CANCEL_BYTES: Final = 4_096  # {type, job_id, timestamp, source}
MAX_INPUT_DEPTH: Final = 4  # nesting of an input message: a job's `parameters` object is level 2
# job_id: echoed unchanged into results and used in Redis key names. The consumer's own is
# `backtest_<epoch>_<8 hex>` (28 characters); other tools may use UUIDs. No spaces, quotes or controls.
MAX_JOB_ID_LEN: Final = 100
JOB_ID_PATTERN: Final = r"[A-Za-z0-9_.:@\-]{1,100}"
MAX_JOB_PATTERNS: Final = 100  # pattern names per job (the UI offers 11)
# Tickers as TickStockAppV2 and Massive spell them: upper-case letters and digits, with `.` (BRK.A),
# `-` and `/` (share classes, units), `:` (Massive's X:BTCUSD, C:EURUSD, I:SPX) and `^` (index
# symbols); at most MAX_SYMBOL_LEN characters (the audit column). No lower case, spaces or quotes.
TICKER_PATTERN: Final = r"[A-Z0-9.\-/:^]{1,20}"
# A tick's price and volume: finite, price > 0, volume >= 0, and small enough that sums stay finite.
MAX_TICK_PRICE: Final = 1e9
MAX_TICK_VOLUME: Final = 1e13
# A tick's timestamp must lie within this window around the wall clock: a feed replayed from the
# last year is fine; a tick from the future (beyond clock skew) would move the tick clock ahead.
TICK_MAX_AGE_S: Final = 366 * 86_400
TICK_MAX_LEAD_S: Final = 300.0
# Per-symbol state of the tick source and the streaming engine: at most this many symbols (Massive's
# whole US stock universe is ~12,000). The tick source forgets a symbol whose last bar closed
# TICK_IDLE_S ago (a late tick for it is then refused by the engine as out of order); the engine, when
# full, forgets the series updated least recently (their pattern history restarts if they return).
MAX_TRACKED_SYMBOLS: Final = 25_000
TICK_IDLE_S: Final = 300.0
# A backtest job run this many times without producing its result (a crash each time) is moved aside.
MAX_JOB_ATTEMPTS: Final = 3
KEY_BACKTEST_ATTEMPTS: Final = PRODUCER_PREFIX + "backtest:attempts"  # hash job_id -> runs started
KEY_BACKTEST_POISON: Final = PRODUCER_PREFIX + "backtest:poison"  # jobs moved aside, with the reason
MAX_POISON_KEPT: Final = 1_000
MAX_ERROR_LEN: Final = 500  # the `error` text of a failed result
