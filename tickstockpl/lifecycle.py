"""Signal handling for the supervised processes: handlers only set a flag.

The first SIGTERM (or SIGINT) asks the loop to finish the step in flight and stop; a second one
exits at once, leaving in-flight work for recovery (as dramatiq's worker does).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from tickstockpl.exitcodes import RET_CONFIG, RET_OK
from tickstockpl.logs import setup_logging
from tickstockpl.settings import Settings, SettingsError

log = logging.getLogger(__name__)
RET_KILLED = 128 + signal.SIGTERM  # the second signal: what a shell reports for a TERM'd process


def install_stop_handlers(stop: threading.Event, name: str) -> None:
    """Route SIGTERM and SIGINT to `stop`; the second signal exits immediately."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("%s: second %s, exiting now", name, signal.Signals(signum).name)
            os._exit(RET_KILLED)
        log.info("%s: %s received, finishing the step in flight", name, signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def service_main(name: str, run: Callable[[Settings, threading.Event], int]) -> int:
    """How every supervised process starts: settings (a bad one exits RET_CONFIG, naming the
    variable), logging to stdout, the stop handlers, then its `run` loop."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        setup_logging("INFO", name)
        log.error("%s: configuration error: %s", name, exc)
        return RET_CONFIG
    setup_logging(settings.log_level, name)
    stop = threading.Event()
    install_stop_handlers(stop, name)
    return run(settings, stop)


__all__ = ["RET_OK", "RET_KILLED", "install_stop_handlers", "service_main"]
