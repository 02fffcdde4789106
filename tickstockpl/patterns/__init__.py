"""Pattern detection: TA-Lib candlesticks and the four named patterns, streaming or over a history."""

from tickstockpl.patterns.candles import ALL_CANDLES, DEFAULT_CANDLES, NEUTRAL_CANDLES
from tickstockpl.patterns.custom import (
    DEFAULT_CUSTOM,
    PriceBreakout,
    ResistanceBreak,
    SupportTest,
    VolumeSpike,
)
from tickstockpl.patterns.engine import HistorySignal, PatternSet, evaluate, history_signals
from tickstockpl.patterns.signals import EventBuilder, Signal, publishable, signal_to_event
from tickstockpl.patterns.streaming import StreamingEngine

__all__ = [
    "ALL_CANDLES",
    "DEFAULT_CANDLES",
    "DEFAULT_CUSTOM",
    "NEUTRAL_CANDLES",
    "EventBuilder",
    "HistorySignal",
    "PatternSet",
    "PriceBreakout",
    "ResistanceBreak",
    "Signal",
    "StreamingEngine",
    "SupportTest",
    "VolumeSpike",
    "evaluate",
    "history_signals",
    "publishable",
    "signal_to_event",
]
