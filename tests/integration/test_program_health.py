"""Health covers every supervised program (issue 13, finding 1's part): the real supervisord.conf,
its programwatch event listener and a program that is FATAL or restart-looping make the health
event `degraded`, doctor fail and the exporter's failing gauge (the alert rule's input) 1."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT
from tests.integration.test_least_privilege import _doctor
from tests.support import poll
from tickstockpl import health
from tickstockpl.programwatch import ProgramStates, parse_event
from tickstockpl.services.exporter_metrics import program_metrics
from tickstockpl.services.heartbeat import Heartbeat
from tickstockpl.settings import Settings
from tickstockpl.stack.supervisord import Supervisord

BROKEN = """
[program:broken]
command=/bin/sh -c "exit 3"
autostart=true
startsecs=1
startretries=1
[program:looping]
command=/bin/sh -c "sleep 1.2; exit 1"
autostart=true
autorestart=true
startsecs=1
startretries=100
"""


@pytest.fixture
def supervisord(settings: Settings, tmp_path: Path) -> Iterator[Supervisord]:
    """Our supervisord.conf with two bad programs included; the tickstockpl group is not started."""
    var_dir = tmp_path / "var"
    daemon = Supervisord(var_dir, ROOT)
    daemon.write_include("broken", BROKEN)
    env = dict(os.environ)
    env.update(settings.to_env())
    env.update(
        TICKSTOCKPL_VAR=str(var_dir),
        TICKSTOCKPL_PYTHON=sys.executable,
        TICKSTOCKPL_AUTOSTART="false",
        TICKSTOCKPL_SERVICE_USER=pwd.getpwuid(os.geteuid()).pw_name,
        TICKSTOCKPL_ENV_FILE="",
    )
    daemon.start(env)
    yield daemon
    daemon.shutdown(60)


def test_a_fatal_and_a_looping_program_degrade_health_fail_doctor_and_set_the_gauge(
    supervisord: Supervisord, settings: Settings, redis_client: redis.Redis
) -> None:
    def states() -> dict[str, health.ProgramState]:
        return health.read_programs(redis_client)

    def failing(name: str) -> bool:
        program = states().get(name)
        return program is not None and program.problem is not None

    poll(lambda: failing("broken:broken"), 60, "broken to be FATAL")
    poll(lambda: failing("looping:looping"), 60, "looping to be restart-looping")
    programs = states()
    assert programs["broken:broken"].problem == "broken:broken FATAL (gave up restarting)"
    assert "looping:looping restart-looping" in (programs["looping:looping"].problem or "")
    beat = Heartbeat(settings)
    try:
        report = beat.evaluate()
    finally:
        beat.close(clean_stop=True)
    assert report.status == health.DEGRADED
    assert "broken:broken FATAL (gave up restarting)" in report.reasons
    assert report.components["programs"]["status"] == health.FAILING
    doctor = _doctor(settings)
    assert doctor["code"] == 1 and "programs" in doctor["required_failed"]
    assert "broken:broken FATAL" in doctor["by_name"]["programs"]["detail"]
    gauge = {m.name: m for m in program_metrics(programs)}["tickstockpl_program_failing"]
    by_program = {sample.labels["program"]: sample.value for sample in gauge.samples}
    assert by_program["broken:broken"] == 1.0 and by_program["looping:looping"] == 1.0
    assert by_program.get("programwatch:programwatch", 0.0) == 0.0


def test_a_healthy_program_is_not_failing() -> None:
    states = ProgramStates()
    for state in ("STARTING", "RUNNING", "STOPPING", "STOPPED", "STARTING", "RUNNING"):
        states.update("g:p", state, expected=None, now=100.0)
    states.update("g:p", "EXITED", expected=True, now=101.0)  # exit 0 or 78: expected, not a failure
    assert states.programs["g:p"]["failures"] == []


def test_failures_older_than_the_window_do_not_count() -> None:
    states = ProgramStates(window_s=10)
    for moment in (0.0, 1.0, 2.0):
        states.update("g:p", "EXITED", expected=False, now=moment)
    states.update("g:p", "EXITED", expected=False, now=20.0)
    assert states.programs["g:p"]["failures"] == [20.0]


def test_events_are_parsed_from_supervisords_payload() -> None:
    headers = {"eventname": "PROCESS_STATE_EXITED", "len": "60"}
    payload = "processname:relay groupname:tickstockpl from_state:RUNNING expected:0 pid:42"
    assert parse_event(headers, payload) == ("tickstockpl:relay", "EXITED", False)
    assert parse_event({"eventname": "TICK_5"}, "when:1") is None


ALERT_TEST = """
rule_files:
  - {rules}
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'tickstockpl_program_failing{{program="tickstockpl:backtester"}}'
        values: '0 0 1 1 1 1 1 1'
      - series: 'tickstockpl_program_failing{{program="tickstockpl:relay"}}'
        values: '0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 30s
        alertname: TickStockPLProgramFailing
        exp_alerts: []
      - eval_time: 90s
        alertname: TickStockPLProgramFailing
        exp_alerts:
          - exp_labels:
              severity: critical
              program: tickstockpl:backtester
            exp_annotations:
              summary: "tickstockpl:backtester is FATAL or restart-looping: see make logs"
"""


def test_the_alert_fires_for_a_failing_program_only(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(ALERT_TEST.format(rules=ROOT / "deploy" / "alerts.yml"))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
