"""var/log/stack.log's writer: lines copied as they come, rotated by size, and a process that outlives
SIGTERM and stops only at the end of its input (when supervisord has exited)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support import poll
from tickstockpl.stack import logfile


def test_rotates_by_size_keeping_whole_lines_and_the_newest(tmp_path: Path) -> None:
    log = tmp_path / "stack.log"
    handler = logfile.rotating_handler(log, max_bytes=100, backups=2)
    lines = [f"line {n:03d} {'x' * 20}\n".encode() for n in range(30)]  # 30 bytes each
    try:
        logfile.copy(lines, handler)
    finally:
        handler.close()
    files = [log.with_name("stack.log.2"), log.with_name("stack.log.1"), log]
    assert not log.with_name("stack.log.3").exists()
    assert all(path.stat().st_size <= 100 for path in files)
    kept = b"".join(path.read_bytes() for path in files)
    assert kept == b"".join(lines[-len(kept.splitlines()) :])  # the newest lines, in order, none cut
    assert len(kept.splitlines()) >= 6


def test_copies_bytes_as_they_are_and_undecodable_ones_replaced(tmp_path: Path) -> None:
    log = tmp_path / "stack.log"
    handler = logfile.rotating_handler(log)
    try:
        logfile.copy([b"100% done\n", b"caf\xc3\xa9 \xff\n", b"no newline at the end"], handler)
    finally:
        handler.close()
    assert log.read_text() == "100% done\ncafé \ufffd\nno newline at the end"


def test_the_writer_ignores_sigterm_and_stops_at_the_end_of_its_input(tmp_path: Path) -> None:
    log = tmp_path / "log" / "stack.log"
    log.parent.mkdir()
    pidfile = tmp_path / "logwriter.pid"
    writer = logfile.start_writer(log)
    assert writer.stdin is not None
    try:
        writer.stdin.write(b"first\n")
        writer.stdin.flush()
        poll(lambda: log.exists() and log.read_text() == "first\n", 10, "the line in the log, unbuffered")
        pidfile.write_text(f"{writer.pid}\n")
        assert logfile.writer_pid(pidfile) == writer.pid
        writer.send_signal(signal.SIGTERM)
        writer.stdin.write(b"after SIGTERM\n")
        writer.stdin.flush()
        poll(lambda: log.read_text().endswith("after SIGTERM\n"), 10, "a line written after SIGTERM")
    finally:
        writer.stdin.close()
        assert writer.wait(timeout=10) == 0
    assert logfile.writer_pid(pidfile) is None
