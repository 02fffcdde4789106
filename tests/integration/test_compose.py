"""The deployment files: docker-compose.yml against the Compose schema (offline), the Prometheus
config and alert rules through promtool, and supervisord.conf through supervisord's own parser.

No Docker daemon is needed; `docker-compose config -q` runs only where that binary exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from ruamel.yaml import YAML

from tickstockpl import contract, health
from tickstockpl.services.exporter import build_registry
from tickstockpl.settings import AUDIT_ROLE, BACKTEST_ROLE, READ_ROLE, Settings
from tickstockpl.stack.compose import published_ports
from tickstockpl.stack.embedded import SUPERUSER_VARIABLES
from tickstockpl.stack.supervisord import PROGRAMS, Supervisord
from tickstockpl.supervised import STARTSECS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text())


def check_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_matches_the_compose_schema() -> None:
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:\n", "    healthcheck: 5\n", 1))
    assert check_compose_schema(broken).returncode != 0


def test_compose_services_are_wired_as_the_issue_asks() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert set(services) == {"postgres", "redis", "producer", "prometheus"}
    postgres, redis, producer = services["postgres"], services["redis"], services["producer"]
    assert any(port.endswith(":-5433}:5432") for port in postgres["ports"])  # host port 5433 by default
    assert any("db/init.sql:/docker-entrypoint-initdb.d/" in volume for volume in postgres["volumes"])
    assert any("docker-role-passwords.sh:/docker-entrypoint-initdb.d/" in v for v in postgres["volumes"])
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    for service in (postgres, redis, producer):
        assert service["healthcheck"]["test"]
    assert producer["healthcheck"]["test"] == ["CMD", "tickstockpl", "heartbeat", "--check"]
    assert producer["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    # Secrets come from .env, never from the file itself.
    assert "${POSTGRES_PASSWORD:?" in COMPOSE.read_text()
    assert not re.search(r"PASSWORD:\s+[A-Za-z0-9]", COMPOSE.read_text())


def test_files_the_dockerfile_and_compose_mount_exist() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # not another stage's files
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    for service in load_yaml(COMPOSE)["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_published_ports_are_the_settings_make_up_checks() -> None:
    """compose publishes on the ports `make up` checks first: same variables, same defaults."""
    defaults = Settings()
    expected = {
        "postgres": ("POSTGRES_PUBLISHED_PORT", defaults.postgres_published_port, 5432),
        "redis": ("REDIS_PUBLISHED_PORT", defaults.redis_published_port, 6379),
        "producer": ("TICKSTOCKPL_METRICS_PUBLISHED_PORT", defaults.metrics_published_port, 9108),
        "prometheus": ("PROMETHEUS_PUBLISHED_PORT", defaults.prometheus_published_port, 9090),
    }
    services = load_yaml(COMPOSE)["services"]
    for name, (variable, default, inside) in expected.items():
        assert services[name]["ports"] == [f"127.0.0.1:${{{variable}:-{default}}}:{inside}"], name
    assert {p.variable for p in published_ports(defaults)} == {v for v, _, _ in expected.values()}


def test_the_producer_container_connects_as_the_audit_role_and_holds_no_superuser_secret() -> None:
    producer = load_yaml(COMPOSE)["services"]["producer"]["environment"]
    assert producer["POSTGRES_USER"] == AUDIT_ROLE
    assert "POSTGRES_AUDIT_PASSWORD" in producer["POSTGRES_PASSWORD"]
    assert producer["TICKSTOCKPL_DB_ROLES"] == "least"
    # env_file may hand .env's superuser secrets over; these win over it with empty values.
    for name in SUPERUSER_VARIABLES:
        assert producer.get(name) == "", name
    init_script = (ROOT / "db" / "docker-role-passwords.sh").read_text()
    for role in (AUDIT_ROLE, READ_ROLE, BACKTEST_ROLE):
        assert f"ALTER ROLE {role} LOGIN PASSWORD" in init_script


def test_dockerignore_keeps_state_tests_and_caches_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "var", "tests", ".git", ".env", "**/__pycache__", ".mypy_cache"} <= ignored


@pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed on this machine"
)
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "POSTGRES_PASSWORD=x\nPOSTGRES_SUPERUSER_PASSWORD=y\n"
        "POSTGRES_AUDIT_PASSWORD=a\nPOSTGRES_READ_PASSWORD=r\nPOSTGRES_BACKTEST_PASSWORD=b\n"
    )
    result = subprocess.run(
        ["docker-compose", "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; .ci/run does)")
    return promtool


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(ROOT / "deploy" / "alerts.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = {
        rule["alert"]
        for group in load_yaml(ROOT / "deploy" / "alerts.yml")["groups"]
        for rule in group["rules"]
    }
    for wanted in ("HeartbeatStale", "OutboxBacklog", "DeadLetters", "NoSubscribers"):
        assert f"TickStockPL{wanted}" in names


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    shutil.copy(ROOT / "deploy" / "alerts.yml", tmp_path / "alerts.yml")
    config = (
        (ROOT / "deploy" / "prometheus.yml").read_text().replace("/etc/prometheus/alerts.yml", "alerts.yml")
    )
    (tmp_path / "prometheus.yml").write_text(config)
    result = subprocess.run(
        [_promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_use_only_metrics_the_exporter_serves(
    settings: Settings, redis_client: redis.Redis
) -> None:
    # A supervisord reports its programs (tickstockpl/programwatch.py): the per-program metrics have samples.
    redis_client.hset(health.KEY_PROGRAMS, "tickstockpl:backtester", '{"state": "RUNNING", "since": 0}')
    # A relay has published a stamped event: the boundary histogram has its buckets.
    redis_client.hset(contract.KEY_STATS, contract.stat_field(contract.STAT_BOUNDARY_BUCKET, "+Inf"), 1)
    registry, collector = build_registry(settings)
    try:
        served = {sample.name for family in registry.collect() for sample in family.samples}
    finally:
        collector.close()
    used = set(re.findall(r"\btickstockpl_[a-z_]+", (ROOT / "deploy" / "alerts.yml").read_text()))
    assert used, "the rules name no metric"
    assert used <= served, f"rules use metrics the exporter does not serve: {sorted(used - served)}"


def supervisord_options(tmp_path: Path, shards: int = 1, first: int = 0) -> Any:
    """supervisord's own reading of supervisord.conf, with the environment our launchers give it."""
    from supervisor.options import ServerOptions

    options = ServerOptions()
    options.environ_expansions = {
        "ENV_TICKSTOCKPL_VAR": str(tmp_path),
        "ENV_TICKSTOCKPL_PYTHON": sys.executable,
        "ENV_TICKSTOCKPL_AUTOSTART": "false",
        "ENV_TICKSTOCKPL_SERVICE_USER": "nobody",
        "ENV_TICKSTOCKPL_DETECTOR_SHARDS": str(shards),
        "ENV_TICKSTOCKPL_SHARD_FIRST": str(first),
    }
    options.configfile = str(ROOT / "supervisord.conf")
    options.process_config(do_usage=False)
    return options


def test_supervisord_parses_the_config_with_every_program_in_one_group(tmp_path: Path) -> None:
    options = supervisord_options(tmp_path)
    groups = {group.name: group for group in options.process_group_configs}
    assert set(groups) == {"tickstockpl", "programwatch"}  # the event listener: its own group
    programs = {program.name: program for program in groups["tickstockpl"].process_configs}
    assert set(programs) == set(Supervisord(tmp_path).processes()) == {"detector-0", *PROGRAMS[1:]}
    for name, program in programs.items():
        module = name.removesuffix("-0")
        assert program.command.endswith(f"-m tickstockpl.supervised tickstockpl.services.{module}")
        assert program.startsecs == STARTSECS
        assert program.exitcodes == [0, 78]  # RET_CONFIG is "expected": misconfigured, do not restart
        assert program.stdout_logfile == "/dev/stdout" and program.stdout_logfile_maxbytes == 0
        assert program.redirect_stderr
        shard = {"TICKSTOCKPL_SHARD_INDEX": "0"} if module == "detector" else {}
        assert program.environment == {"PYTHONUNBUFFERED": "1", **shard}
        assert program.stopwaitsecs >= 10
    assert options.nodaemon and options.logfile == "/dev/null"


def test_supervisord_runs_one_detector_per_shard_of_this_host(tmp_path: Path) -> None:
    # A second host of two x two: shards 2 and 3 of 4, named so they never meet the first host's.
    settings = Settings(detector_shards=2, shard_first=2, shard_count=4)
    options = supervisord_options(tmp_path, shards=2, first=2)
    (group,) = [group for group in options.process_group_configs if group.name == "tickstockpl"]
    detectors = {p.name: p.environment for p in group.process_configs if p.name.startswith("detector")}
    assert detectors == {
        "detector-2": {"PYTHONUNBUFFERED": "1", "TICKSTOCKPL_SHARD_INDEX": "2"},
        "detector-3": {"PYTHONUNBUFFERED": "1", "TICKSTOCKPL_SHARD_INDEX": "3"},
    }
    assert settings.detector_processes == tuple(detectors)
    daemon = Supervisord(tmp_path, detectors=settings.detector_processes)
    assert daemon.processes() == ["detector-2", "detector-3", *PROGRAMS[1:]]
