"""What this project relies on in each image docker-compose.yml and the Dockerfile name, checked on
whichever image is local under that name: the official one, or the stand-in `make offline-images`
builds (docker/offline/, a test fixture). A stand-in must pass exactly these, and nothing else of
the official images is used:

postgres  P1 POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB make the superuser, its password (checked
             over TCP through a published port; a wrong one is refused) and the database;
          P2 /docker-entrypoint-initdb.d: *.sql run in POSTGRES_DB and *.sh run with the container's
             environment, in name order, on the first start only (db/init.sql, docker-role-passwords.sh);
          P3 the data lives in /var/lib/postgresql/data and survives a restart;
          P4 psql and pg_isready inside, on PATH (compose's health check, and testcontainers' readiness
             check: psql --host 127.0.0.1 in the container).
redis     R1 `redis-server --appendonly yes` as the command, reachable from outside the container;
          R2 redis-cli inside (compose's health check);
          R3 the append-only files in /data (the volume).
prometheus M1 the entrypoint takes compose's flags (--config.file=/etc/prometheus/prometheus.yml,
             --storage.tsdb.path=/prometheus) and loads the rule files the config names;
          M2 the HTTP API on 9090.
python    Y1 `python` is 3.11, with pip and venv (the Dockerfile's build stage);
          Y2 sh and useradd (the Dockerfile's run stage).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

from tests.conftest import docker_available
from tests.e2e.stackutil import prometheus_get
from tests.support import poll
from tickstockpl.local_servers import free_port

pytestmark = pytest.mark.e2e
if not docker_available():
    pytest.skip(
        "no Docker daemon answers (TICKSTOCKPL_TEST_DOCKER=never, or none running)", allow_module_level=True
    )

from ruamel.yaml import YAML  # noqa: E402

import docker  # noqa: E402  (only where a daemon answers)

ROOT = Path(__file__).resolve().parents[2]
SERVICES = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())["services"]
PYTHON_IMAGE = next(
    line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")
)
FIXTURE_LABEL = "org.tickstockpl.test-fixture"


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    docker_client = docker.from_env(timeout=60)
    yield docker_client
    docker_client.close()


@pytest.fixture
def run(client: Any) -> Iterator[Any]:
    """`run(image, ...)`: a detached container, removed with its anonymous volumes afterwards."""
    started: list[Any] = []

    def start(image: str, **kwargs: Any) -> Any:
        container = client.containers.run(image, detach=True, **kwargs)
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove(force=True, v=True)


def world_readable(directory: Path) -> Path:
    """Container users (postgres, nobody) must read the mounted files."""
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o755 if path.is_dir() or path.suffix == ".sh" else 0o644)
    return directory


@pytest.mark.parametrize(
    "image", [SERVICES[name]["image"] for name in ("postgres", "redis", "prometheus")] + [PYTHON_IMAGE]
)
def test_every_image_is_local_and_a_stand_in_says_what_it_is(client: Any, image: str) -> None:
    local = client.images.get(image)  # compose and docker build never pull a local tag
    labels = local.attrs["Config"]["Labels"] or {}
    if labels.get(FIXTURE_LABEL) == "true":
        assert labels["org.tickstockpl.stands-in-for"] == image
    kind = "stand-in" if FIXTURE_LABEL in labels else "official"
    print(f"{image}: {kind}, {local.attrs['Size'] / 1e6:.0f} MB")


def test_postgres_image_contract(run: Any, tmp_path: Path) -> None:
    init = tmp_path / "initdb"
    init.mkdir()
    (init / "10-schema.sql").write_text("CREATE TABLE started (n int, who text);\n")
    (init / "20-row.sh").write_text(
        "#!/bin/sh\nset -eu\n"
        'psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB"'
        " -c \"INSERT INTO started VALUES (1, '$MARKER')\"\n"
    )
    port = free_port()
    password = "s3cret-pw"
    container = run(
        SERVICES["postgres"]["image"],
        environment={
            "POSTGRES_USER": "boss",
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": "appdb",
            "MARKER": "sh",
        },
        ports={"5432/tcp": ("127.0.0.1", port)},
        volumes={str(world_readable(init)): {"bind": "/docker-entrypoint-initdb.d", "mode": "ro"}},
    )

    def connect(pw: str = password) -> Any:
        return psycopg2.connect(
            host="127.0.0.1", port=port, user="boss", password=pw, dbname="appdb", connect_timeout=2
        )

    def ready() -> bool:
        psql = "psql --username boss --dbname appdb --host 127.0.0.1 -c 'select 1'"
        code, _ = container.exec_run(["sh", "-c", psql], environment={"PGPASSWORD": password})
        return code == 0

    poll(ready, 90, "psql --host 127.0.0.1 inside the container (P4)")

    def rows() -> list[tuple[Any, ...]]:
        conn = connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT n, who FROM started")
                return cur.fetchall()
        finally:
            conn.close()

    assert rows() == [(1, "sh")]  # P1, P2: both scripts ran, in order, in POSTGRES_DB
    with pytest.raises(psycopg2.OperationalError):  # P1: the password is required over TCP
        connect("wrong").close()
    assert container.exec_run(["pg_isready", "-U", "boss", "-d", "appdb"]).exit_code == 0  # P4
    code, version = container.exec_run(["sh", "-c", "cat /var/lib/postgresql/data/PG_VERSION"])
    assert code == 0 and version.decode().strip() == "15"  # P3
    container.restart(timeout=30)
    poll(ready, 90, "postgres after a restart")
    assert rows() == [(1, "sh")]  # P2, P3: data kept, the init scripts not run again


def test_redis_image_contract(run: Any) -> None:
    port = free_port()
    container = run(
        SERVICES["redis"]["image"],
        command=["redis-server", "--appendonly", "yes"],
        ports={"6379/tcp": ("127.0.0.1", port)},
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    poll(answers, 30, "redis through the published port (R1)")
    client.set("k", "v")
    assert client.config_get("appendonly") == {"appendonly": "yes"}  # R1
    assert container.exec_run(["redis-cli", "ping"]).output.strip() == b"PONG"  # R2
    assert container.exec_run(["sh", "-c", "ls /data"]).output.split() != []  # R3
    client.close()


def test_prometheus_image_contract(run: Any, tmp_path: Path) -> None:
    config = tmp_path / "etc"
    config.mkdir()
    (config / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 5s\nrule_files:\n  - /etc/prometheus/alerts.yml\n"
        "scrape_configs:\n  - job_name: itself\n    static_configs:\n      - targets: ['localhost:9090']\n"
    )
    (config / "alerts.yml").write_text(
        "groups:\n  - name: probe\n    rules:\n      - alert: ProbeAlert\n        expr: vector(0) > 1\n"
    )
    port = free_port()
    run(
        SERVICES["prometheus"]["image"],
        command=SERVICES["prometheus"]["command"],
        ports={"9090/tcp": ("127.0.0.1", port)},
        volumes={str(world_readable(config)): {"bind": "/etc/prometheus", "mode": "ro"}},
    )
    base = f"http://127.0.0.1:{port}"

    def rules() -> list[str]:
        try:
            groups = prometheus_get(base, "/api/v1/rules")["groups"]
        except OSError:
            return []
        return [rule["name"] for group in groups for rule in group["rules"]]

    assert poll(rules, 60, "the rules API (M1, M2)") == ["ProbeAlert"]
    targets = poll(lambda: prometheus_get(base, "/api/v1/targets")["activeTargets"], 30, "targets")
    assert targets[0]["labels"]["job"] == "itself"  # M1: our config file, at compose's path


def test_python_image_contract(run: Any) -> None:
    script = (
        "set -e; python -c 'import sys; assert sys.version_info[:2] == (3, 11)';"
        " pip --version; python -m venv /tmp/v && /tmp/v/bin/pip --version;"
        " command -v useradd; echo contract-ok"
    )
    container = run(PYTHON_IMAGE, command=["sh", "-c", script])
    result = container.wait(timeout=60)
    output = container.logs().decode(errors="replace")
    assert result["StatusCode"] == 0, output
    assert "contract-ok" in output
