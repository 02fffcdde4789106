"""What every part of the stack commands shares: the checkout's root, one error that carries its exit
code, progress lines on stdout, and a deadline poll that fails with that error."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tickstockpl.exitcodes import RET_FAILED, RET_UNAVAILABLE
from tickstockpl.local_servers import LocalServerError, wait_for

ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """The stack cannot be brought up; the message says what to fix. `code` is the exit code."""

    def __init__(self, message: str, code: int = RET_FAILED) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    """Progress lines on stdout (never stderr: the consumer's launcher does not read it)."""
    print(f"tickstockpl: {message}", flush=True)


def failed(exc: Exception, otherwise: int = RET_UNAVAILABLE) -> int:
    """Say why a stack command failed; the exit code is a StackError's own, else `otherwise`."""
    say(f"error: {exc}")
    return exc.code if isinstance(exc, StackError) else otherwise


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Poll `condition` with a deadline; StackError naming `what` when it never holds."""
    try:
        wait_for(condition, timeout_s, what, interval_s)
    except LocalServerError as exc:
        raise StackError(str(exc), RET_UNAVAILABLE) from None


def poll_until_healthy(
    unhealthy_reasons: Callable[[], list[str]], timeout_s: float, interval_s: float, hint: str = ""
) -> None:
    """Poll until `unhealthy_reasons()` is empty, saying what we wait for once per change; past
    `timeout_s`, StackError with the last reasons (and `hint`, where to look)."""
    deadline = time.monotonic() + timeout_s
    shown: list[str] = []
    while reasons := unhealthy_reasons():
        if time.monotonic() > deadline:
            raise StackError(
                f"not healthy after {timeout_s:.0f} s: {'; '.join(reasons)}{hint}", RET_UNAVAILABLE
            )
        if reasons != shown:
            say(f"waiting: {'; '.join(reasons)}")
            shown = reasons
        time.sleep(interval_s)
