"""The ways people start the stack: `tickstockpl up/down` (what `make up/down` run), the script
TickStockAppV2's launcher runs, and a CSV replay of real data through the supervised stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import redis

from tests.e2e.stackutil import (
    ROOT,
    RunningStack,
    Subscriber,
    alive,
    descendants,
    processes_mentioning,
    stack_settings,
)
from tests.support import poll
from tickstockpl import contract
from tickstockpl.exitcodes import RET_CONFIG
from tickstockpl.stack.base import StackError
from tickstockpl.stack.embedded import EmbeddedStack

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _cli_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for `tickstockpl up` on fresh ports: every setting spelled out, so the
    checkout's .env (if any) plays no part."""
    settings = stack_settings(speed=60.0)  # make up's default pace
    env = {**os.environ, **settings.to_env(), "TICKSTOCKPL_VAR_DIR": str(var_dir), **extra}
    return env


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tickstockpl"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def _stack_pids(var_dir: Path) -> set[int]:
    pid = int((var_dir / "supervisord.pid").read_text())
    return descendants(pid)


@pytest.mark.timeout(600)
def test_up_subscribe_up_again_status_down(e2e_dir: Path) -> None:
    """The README's path: `make up`, watch with redis-cli, `make up` again, `make status`, `make down`."""
    var_dir = e2e_dir / "cli-var"
    env = _cli_env(var_dir)
    up = _cli("up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "redis-cli -p " in up.stdout and "SUBSCRIBE tickstock.events.patterns" in up.stdout
    pids = _stack_pids(var_dir)
    try:
        started = time.monotonic()
        watcher = subprocess.Popen(
            ["redis-cli", "-p", env["REDIS_PORT"], "SUBSCRIBE", contract.CHANNEL_PATTERNS],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert watcher.stdout is not None
            lines = iter(watcher.stdout.readline, "")
            event = poll(lambda: next((line for line in lines if line.startswith("{")), None), 60, "an event")
        finally:
            watcher.kill()
            watcher.communicate()
        contract.decode_pattern_event(event)
        print(f"first event {time.monotonic() - started:.1f} s after `up` returned")

        again = _cli("up", env=env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "already running" in again.stdout
        assert _stack_pids(var_dir) >= pids - {p for p in pids if not alive(p)}  # nothing restarted

        status = _cli("status", env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("RUNNING") >= 5
        log = (var_dir / "log" / "stack.log").read_text()  # through the rotating writer
        assert "success: relay entered RUNNING state" in log
    finally:
        down = _cli("down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    poll(lambda: not [pid for pid in pids if alive(pid)], 60, "every process `up` started to exit")
    assert processes_mentioning(str(var_dir)) == []
    assert "nothing running" in _cli("down", env=env).stdout


@pytest.mark.timeout(600)
def test_the_launcher_path_runs_the_stack_in_the_foreground(e2e_dir: Path) -> None:
    """As TickStockAppV2's start_both_services.py does it: by path, root as cwd but not on sys.path,
    stderr piped and never read; SIGTERM stops everything."""
    var_dir = e2e_dir / "launcher-var"
    env = _cli_env(var_dir)
    env.pop("PYTHONPATH", None)
    script = ROOT / "src" / "services" / "pattern_detection_service.py"
    system_python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    process = subprocess.Popen(
        [system_python, str(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = iter(process.stdout.readline, "")
        poll(
            lambda: next((line for line in lines if "the stack is up and healthy" in line), None),
            180,
            "healthy",
        )
        pids = _stack_pids(var_dir)
        with Subscriber(redis.Redis(host="127.0.0.1", port=int(env["REDIS_PORT"]))) as subscriber:
            poll(lambda: subscriber.messages, 60, "an event on the channel")
            contract.decode_pattern_event(subscriber.messages[0])
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)  # reads what is left and closes both pipes
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert stderr == ""  # all output on stdout: the launcher never reads stderr
    poll(lambda: not [pid for pid in pids if alive(pid)], 60, "every process to exit")
    assert processes_mentioning(str(var_dir)) == []


@pytest.mark.timeout(600)
def test_a_csv_replay_of_real_data_flows_through_the_stack(
    start_stack: Callable[..., AbstractContextManager[RunningStack]],
) -> None:
    daily = ROOT / "data" / "daily_us_equities_2000_2013.csv"
    # ~13 years of daily bars in ~10 s: long enough for supervisord to see the detector start.
    overrides = {"source": "csv", "csv_files": (str(daily),), "speed": 4.0e7}
    with start_stack(**overrides) as stack, Subscriber(stack.redis()) as subscriber:
        poll(lambda: stack.status()["tickstockpl:detector-0"][0] == "EXITED", 180, "the replay to finish")
        assert stack.stack.supervisord.call("getProcessInfo", "tickstockpl:detector-0")["exitstatus"] == 0
        poll(
            lambda: all(
                stack.metric(name) == 0.0
                for name in ("tickstockpl_outbox_depth", "tickstockpl_processing_depth")
            ),
            120,
            "the relay to drain the replay",
        )
        events = [contract.decode_pattern_event(raw) for raw in subscriber.messages]
        rows = stack.published_rows()
        enqueued = int(stack.metric("tickstockpl_outbox_enqueued_total") or 0)
    assert events, "the replay published nothing"
    symbols = {event["data"]["symbol"] for event in events}
    assert {"AAPL", "MSFT", "IBM"} <= symbols
    assert {event["data"]["tier"] for event in events} == {"daily"}
    assert {flow_id for flow_id, _ in rows} >= {event["data"]["flow_id"] for event in events}
    assert all(count == 1 for _, count in rows)
    assert len(rows) == enqueued
    print(f"CSV replay: {len(events)} events seen, {len(rows)} audited, symbols {sorted(symbols)}")


@pytest.mark.timeout(300)
def test_a_misconfigured_program_is_not_restarted_and_up_says_so(e2e_dir: Path) -> None:
    """Exit 78 (RET_CONFIG) means "fix the configuration": no restart loop, and `up` fails naming it."""
    var_dir = e2e_dir / "misconfigured-var"
    settings = stack_settings(source="massive", massive_api_key="")  # the detector exits 78 at start
    stack = EmbeddedStack(settings=settings, var_dir=var_dir, env_file=None, durable=False)
    try:
        with pytest.raises(StackError) as raised:
            stack.up(timeout_s=120)
        assert raised.value.code == RET_CONFIG
        assert "tickstockpl:detector-0 misconfigured" in str(raised.value)
        info = stack.supervisord.call("getProcessInfo", "tickstockpl:detector-0")
        assert info["exitstatus"] == RET_CONFIG and info["statename"] in ("STOPPED", "EXITED")
        status = RunningStack(stack).status()
        assert status["tickstockpl:relay"][0] == "RUNNING"  # the rest of the stack is unaffected
    finally:
        stack.down()
    assert processes_mentioning(str(var_dir)) == []
