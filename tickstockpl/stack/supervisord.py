"""Our supervisord: started from `supervisord.conf` with its socket, pid file and log under var/, and
driven over its XML-RPC socket (what supervisorctl talks to).

supervisord runs in the foreground (nodaemon) even for `up`: it is started detached in its own
session with its stdout piped into `var/log/stack.log` (rotated by stack.logfile), so the same
configuration serves Docker, `up` and the entry-point scripts. Everything it runs is its child, so
shutting it down stops all that `up` started and touches nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tickstockpl.exitcodes import RET_CONFIG, RET_FAILED, RET_OK
from tickstockpl.sharding import DETECTOR_PROGRAM, detector_process
from tickstockpl.stack import logfile
from tickstockpl.stack.base import ROOT, StackError, say, wait_until
from tickstockpl.supervised import STARTSECS

PROGRAMS = (DETECTOR_PROGRAM, "relay", "heartbeat", "exporter", "backtester")  # supervisord.conf's group
PROCESSES = (detector_process(0), *PROGRAMS[1:])  # the group's processes with one detector shard
GROUP = "tickstockpl"
RUNNING, FATAL, EXITED, BACKOFF = "RUNNING", "FATAL", "EXITED", "BACKOFF"
# A program that exits 78 does so once its imports are done and its configuration read: measured
# 4-5 s after the spawn for the detector on a loaded 2-core host, so the hold alone (2.5 s) is not
# enough to tell it from a program that runs.
SLOW_START_MARGIN_S = 6


def supervisor_call(sock: Path, method: str, *args: Any) -> Any:
    """One call to supervisord's XML-RPC interface (what supervisorctl talks to) on its socket."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{sock}")
    try:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
        return getattr(proxy.supervisor, method)(*args)
    finally:
        transport.close()


@dataclass
class Supervisord:
    """The supervisord whose socket, pid file and log are in `var_dir`, running `root`'s programs."""

    var_dir: Path
    root: Path = ROOT
    # This host's detector processes, one per shard (Settings.detector_processes).
    detectors: tuple[str, ...] = (detector_process(0),)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)  # if we started it
    _writer: subprocess.Popen[bytes] | None = field(default=None, repr=False)  # its log writer, if ours

    @property
    def sock(self) -> Path:
        return self.var_dir / "supervisor.sock"

    @property
    def ctl_conf(self) -> Path:
        return self.var_dir / "supervisorctl.conf"

    @property
    def pidfile(self) -> Path:
        return self.var_dir / "supervisord.pid"

    @property
    def log_file(self) -> Path:
        return self.var_dir / "log" / "stack.log"

    @property
    def writer_pidfile(self) -> Path:
        return self.var_dir / "logwriter.pid"

    def programs(self) -> list[str]:
        """The group's programs whose module exists in this checkout."""
        return [
            name for name in PROGRAMS if (self.root / "tickstockpl" / "services" / f"{name}.py").is_file()
        ]

    def processes(self) -> list[str]:
        """The group's processes: one per program, and the detector's once per shard."""
        names: list[str] = []
        for name in self.programs():
            names.extend(self.detectors if name == DETECTOR_PROGRAM else [name])
        return names

    def pid(self) -> int | None:
        """The pid of our supervisord if it is alive and answers on our socket."""
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:
            if self.call("getPID") == pid:
                return pid
        except (OSError, xmlrpc.client.Error):
            return None
        return None

    def call(self, method: str, *args: Any) -> Any:
        """supervisord's XML-RPC `supervisor.<method>(*args)`."""
        return supervisor_call(self.sock, method, *args)

    def process_info(self) -> list[dict[str, Any]]:
        info: list[dict[str, Any]] = self.call("getAllProcessInfo")
        return info

    def write_include(self, name: str, text: str | None) -> None:
        """var/supervisord.d/<name>.conf, which supervisord.conf includes; None removes it."""
        target = self.var_dir / "supervisord.d" / f"{name}.conf"
        target.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            target.unlink(missing_ok=True)
        else:
            target.write_text(text)

    def start(self, env: Mapping[str, str], foreground: bool = False) -> subprocess.Popen[bytes]:
        """Start supervisord (nodaemon); detached with its output in var/log for `up`."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.sock.unlink(missing_ok=True)
        # For people: `supervisorctl -c var/supervisorctl.conf status` (the main file needs the env).
        self.ctl_conf.write_text(f"[supervisorctl]\nserverurl=unix://{self.sock}\n")
        command = [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.root / "supervisord.conf")]
        if foreground:
            process = subprocess.Popen(command, env=dict(env), cwd=self.root)
        else:
            process = self._start_detached(command, env)

        def answers() -> bool:
            if process.poll() is not None:
                raise StackError(f"supervisord exited with {process.returncode}; see {self.log_file}")
            if self._writer is not None and self._writer.poll() is not None:
                raise StackError(f"the writer of {self.log_file} exited with {self._writer.returncode}")
            return self.pid() == process.pid

        self._process = process  # reaped by shutdown(): no zombie, no "still running" warning
        wait_until(answers, 30, "supervisord's control socket")
        return process

    def _start_detached(self, command: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """supervisord in its own session (Ctrl-C in the shell that ran `make up` leaves it alone),
        its stdout piped into the rotating log writer."""
        open(self.log_file, "ab").close()  # a log we cannot write fails here, not in the writer
        writer = logfile.start_writer(self.log_file)
        self._writer = writer  # reaped by shutdown(), like supervisord
        self.writer_pidfile.write_text(f"{writer.pid}\n")
        pipe = writer.stdin
        assert pipe is not None
        try:
            return subprocess.Popen(
                command,
                env=dict(env),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=pipe,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            pipe.close()  # supervisord now holds the only write end: the writer stops when it exits

    def shutdown(self, timeout_s: float) -> int:
        """Stop supervisord and so everything it started (programs first, local stores last)."""
        pid = self.pid()
        if pid is None:
            say(f"nothing running from {self.var_dir}")
            self.sock.unlink(missing_ok=True)
            return RET_OK
        writer = logfile.writer_pid(self.writer_pidfile)
        say(f"stopping supervisord (pid {pid}) and everything it started")
        self.call("shutdown")
        wait_until(lambda: not _alive(pid), timeout_s, f"supervisord (pid {pid}) to exit")
        if writer is not None:  # it has read supervisord's last line and is closing the log
            wait_until(lambda: not _alive(writer), 30, f"the log writer (pid {writer}) to exit")
        for child in (self._process, self._writer):
            if child is not None:
                child.wait()
        self.writer_pidfile.unlink(missing_ok=True)
        self.sock.unlink(missing_ok=True)
        say("stopped")
        return RET_OK

    def start_programs(self) -> None:
        for name in self.processes():
            try:
                info = self.call("getProcessInfo", f"{GROUP}:{name}")
            except xmlrpc.client.Fault as exc:  # BAD_NAME: it was started with other shard settings
                raise StackError(
                    f"the running supervisord has no {GROUP}:{name} ({exc.faultString}): it was"
                    " started with other TICKSTOCKPL_DETECTOR_SHARDS / TICKSTOCKPL_SHARD_FIRST;"
                    " `make down`, then `make up`",
                    RET_CONFIG,
                ) from None
            if info["statename"] not in (RUNNING, "STARTING"):
                self.call("startProcess", f"{GROUP}:{name}", False)
        say(f"started {', '.join(self.processes())}")

    def check_programs(self) -> None:
        """Fail fast (with the exit code) when a program gave up or exited misconfigured.

        supervisord honours `exitcodes` only after `startsecs`: a program that exits 78 at once is
        retried (BACKOFF) like a crash. Here it is stopped instead, since restarting cannot help.
        """
        for info in self.process_info():
            name = f"{info['group']}:{info['name']}"
            if info["group"] == GROUP and info["name"] not in self.processes():
                continue
            misconfigured = info["exitstatus"] == RET_CONFIG and info["statename"] in (BACKOFF, EXITED, FATAL)
            if misconfigured and info["statename"] == BACKOFF:
                self.call("stopProcess", name, False)
            if (
                misconfigured
                or info["statename"] == FATAL
                or (info["statename"] == EXITED and info["exitstatus"])
            ):
                why = "misconfigured (not restarted)" if misconfigured else "failed"
                raise StackError(
                    f"{name} {why}: {info['statename']}, exit status {info['exitstatus']};"
                    f" see {self.log_file}",
                    RET_CONFIG if misconfigured else RET_FAILED,
                )

    def not_ready(self) -> list[str]:
        """Our processes that are not RUNNING (past the start-up hold) or DONE, with their state."""
        states = {info["name"]: _readiness(info) for info in self.process_info() if info["group"] == GROUP}
        return [
            f"{name} is {states.get(name, 'missing')}"
            for name in self.processes()
            if states.get(name) not in (RUNNING, "DONE")
        ]

    def print_status(self, pid: int) -> None:
        """supervisord's view of every program, one line each (EXITED ones with their exit status)."""
        print(f"supervisord pid {pid}, control socket {self.sock}")
        for info in self.process_info():
            extra = (
                info["description"] if info["statename"] != EXITED else f"exit status {info['exitstatus']}"
            )
            print(f"  {info['group'] + ':' + info['name']:<26} {info['statename']:<9} {extra}")


def program_section(
    name: str, command: list[str], *, stopsignal: str, stopwaitsecs: int, user: str | None = None
) -> str:
    """One supervisord [program:] section; `%` is doubled, since supervisord expands it."""
    lines = [
        f"[program:{name}]",
        "command=" + " ".join(_quote(part) for part in command).replace("%", "%%"),
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        f"stopsignal={stopsignal}",
        f"stopwaitsecs={stopwaitsecs}",
        "redirect_stderr=true",
        "stdout_logfile=/dev/stdout",
        "stdout_logfile_maxbytes=0",
    ]
    if user:
        lines.append(f"user={user}")
    return "\n".join(lines) + "\n"


def _quote(part: str) -> str:
    return f'"{part}"' if (not part or any(c in part for c in " \"'")) else part


def _readiness(info: Mapping[str, Any]) -> str:
    """RUNNING only once past the hold on a misconfigured exit (tickstockpl.supervised); DONE when
    exited 0 (a finite CSV replay that has run its course); else supervisord's state name."""
    if info["statename"] == EXITED and info["exitstatus"] == 0:
        return "DONE"
    if info["statename"] == RUNNING and info["now"] - info["start"] <= STARTSECS + SLOW_START_MARGIN_S:
        return "STARTING"
    return str(info["statename"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
