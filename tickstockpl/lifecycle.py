"""Signal handling for the supervised processes: handlers only set a flag.

The first SIGTERM (or SIGINT) asks the loop to finish the step in flight and stop; a second one
exits at once, leaving in-flight work for recovery (as dramatiq's worker does).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from tickstockpl.exitcodes import RET_OK

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


__all__ = ["RET_OK", "RET_KILLED", "install_stop_handlers"]
