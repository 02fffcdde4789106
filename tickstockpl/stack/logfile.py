"""var/log/stack.log, rotated, so a stack that runs for months cannot fill the disk with its logs.

`up` pipes supervisord's stdout (every program's output, supervisord's own, a local PostgreSQL's)
into `python -m tickstockpl.stack.logfile LOG`, which appends each line through a
RotatingFileHandler: at MAX_BYTES, LOG becomes LOG.1 (LOG.1 becomes LOG.2, up to BACKUPS), so the
logs take at most (BACKUPS + 1) x MAX_BYTES. `tail -F` (make logs) follows the new file. A line
longer than MAX_LINE_BYTES is cut there (with a note of how much was cut), so one huge line cannot
rotate the history away: it takes at least MAX_BYTES / MAX_LINE_BYTES lines to fill a file. (The
services themselves cap and escape each message and sample their lines about rejected input:
tickstockpl.logs.)

The writer stops at the end of its input, which comes when supervisord, the only holder of the
pipe's other end, has exited. It ignores SIGINT, SIGTERM and SIGHUP so that the lines of a
shutdown in progress are still written; it never blocks supervisord for long, since it does nothing
but append.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Iterable
from logging.handlers import RotatingFileHandler
from pathlib import Path

from tickstockpl.exitcodes import RET_OK, RET_USAGE

MAX_BYTES = 5 * 1024 * 1024
MAX_LINE_BYTES = 16 * 1024
BACKUPS = 3
MODULE = "tickstockpl.stack.logfile"


def start_writer(log_file: Path) -> subprocess.Popen[bytes]:
    """The writer for `log_file`, in its own session; hand its stdin to supervisord, then close ours."""
    return subprocess.Popen(
        [sys.executable, "-m", MODULE, str(log_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def writer_pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` while that process is still a writer (not exited, not a pid reused since)."""
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except (OSError, ValueError):
        return None
    return pid if MODULE.encode() in cmdline else None


def rotating_handler(path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> RotatingFileHandler:
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.terminator = ""  # every line brings its own newline
    return handler


def cap(line: bytes, limit: int = MAX_LINE_BYTES) -> bytes:
    """`line` cut to `limit` bytes (its newline kept), with how many bytes were cut."""
    if len(line) <= limit:
        return line
    return line[:limit] + f" …[line cut: {len(line) - limit:,} more bytes]\n".encode()


def copy(lines: Iterable[bytes], handler: logging.Handler) -> None:
    """Each line into `handler` as it arrives (emit flushes), as it came (but capped): no prefix added."""
    for line in lines:
        handler.emit(logging.makeLogRecord({"msg": cap(line).decode(errors="replace")}))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python -m {MODULE} LOG_FILE", flush=True)
        return RET_USAGE
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    handler = rotating_handler(Path(argv[0]))
    try:
        copy(sys.stdin.buffer, handler)
    finally:
        handler.close()
    return RET_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
