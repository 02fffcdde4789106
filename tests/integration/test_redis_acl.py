"""Redis as an attacker-aware operator runs it (issue 13, finding 9): an ACL user with exactly
deploy/redis-producer.acl, TLS with a CA made here with openssl, and every service exiting 78 with
one clear line when Redis refuses its password or a command. Real redis-servers, started here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import ROOT
from tests.integration.test_relay_support import audit_rows, flow_ids, make_events
from tests.support import run_cli
from tickstockpl import contract, outbox
from tickstockpl.exitcodes import RET_CONFIG, RET_OK
from tickstockpl.local_servers import LocalRedis, free_port
from tickstockpl.services import backtester, heartbeat, relay
from tickstockpl.services.exporter import StackCollector
from tickstockpl.settings import Settings
from tickstockpl.stores import redis_client

ACL_FILE = ROOT / "deploy" / "redis-producer.acl"
SERVICES = ("detector", "relay", "heartbeat", "exporter", "backtester")
# A user that may connect and PING, and nothing else: every service's first real command is refused.
PING_ONLY = (
    "on",
    ">ping-only",
    "~*",
    "&*",
    "-@all",
    "+ping",
    "+hello",
    "+auth",
    "+select",
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def acl_rules(password: str) -> list[str]:
    """The `user` line of deploy/redis-producer.acl as ACL SETUSER arguments, with `password`."""
    line = next(line for line in ACL_FILE.read_text().splitlines() if line.startswith("user "))
    tokens = line.split()[1:]
    return [f">{password}" if token == ">CHANGE-ME" else token for token in tokens]


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path_factory.mktemp("acl-redis")).start()
    admin = redis.Redis(host=server.host, port=server.port)
    admin.execute_command("ACL", "SETUSER", *acl_rules("producer-secret"))
    admin.execute_command("ACL", "SETUSER", "pingonly", *PING_ONLY[1:])
    admin.execute_command("ACL", "SETUSER", "pingonly", "on")
    admin.close()
    yield server
    server.stop(kill=True)


@pytest.fixture
def admin(acl_redis: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis(host=acl_redis.host, port=acl_redis.port)
    client.flushall()
    client.execute_command("ACL", "LOG", "RESET")
    yield client
    client.close()


@pytest.fixture
def acl_settings(settings: Settings, acl_redis: LocalRedis, admin: redis.Redis) -> Settings:
    return settings.replace(
        redis_host=acl_redis.host,
        redis_port=acl_redis.port,
        redis_username="tickstockpl",
        redis_password="producer-secret",
        metrics_port=free_port(),
    )


def test_every_part_of_the_producer_runs_under_the_minimal_acl(
    acl_settings: Settings, admin: redis.Redis
) -> None:
    events = make_events(12)
    client = redis_client(acl_settings)
    try:
        outbox.enqueue(client, events)  # the detector's write
    finally:
        client.close()
    assert relay.run(acl_settings, burst=True) == RET_OK
    assert audit_rows(acl_settings) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert heartbeat.run(acl_settings, burst=True) == RET_OK
    assert admin.exists(contract.KEY_HEARTBEAT)
    assert backtester.run(acl_settings, burst=True) == RET_OK
    collector = StackCollector(acl_settings)
    try:
        assert collector.refused_by_redis() is None
        up = {
            s.labels["dependency"]: s.value
            for m in collector.collect()
            if m.name == "tickstockpl_up"
            for s in m.samples
        }
    finally:
        collector.close()
    assert up["redis"] == 1.0
    assert run_cli(acl_settings, "publish-test").returncode == 0
    doctor = run_cli(acl_settings, "doctor")
    assert "✓ Redis reachable" in doctor.stdout, doctor.stdout
    # Nothing the producer did was refused: the ACL is enough (redis-py's optional CLIENT SETINFO
    # aside, on a Redis that knows it).
    # CONFIG GET and INFO (the persistence check) are refused by design: it then reports "unknown".
    expected = {"client|setinfo", "config|get", "info"}
    refused = {_text(entry.get("object", entry.get(b"object", ""))) for entry in admin.acl_log()}
    assert "config|get" in refused and refused <= expected, refused  # the log is read, and holds no more


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("CONFIG", "GET", "appendonly"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("CLIENT", "LIST"),
        ("GET", "someone:else"),
        ("PUBLISH", "another.channel", "x"),
        ("ACL", "LIST"),
        ("SHUTDOWN",),
    ],
)
def test_the_acl_refuses_what_the_producer_does_not_need(
    acl_settings: Settings, command: tuple[str, ...]
) -> None:
    client = redis_client(acl_settings)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()


def _run_service(settings: Settings, name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env(), "TICKSTOCKPL_ENV_FILE": "", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", f"tickstockpl.services.{name}"],
        env=env,
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("username", "password", "said"),
    [
        ("tickstockpl", "wrong", "invalid username-password pair"),
        ("pingonly", "ping-only", "no permissions"),
    ],
    ids=["wrong-password", "forbidden-command"],
)
def test_every_service_exits_78_with_one_clear_line(
    acl_settings: Settings, username: str, password: str, said: str
) -> None:
    """Heartbeat and backtester retried forever, the exporter said nothing (finding 9)."""
    refused = acl_settings.replace(redis_username=username, redis_password=password)
    with ThreadPoolExecutor(len(SERVICES)) as pool:
        results = dict(
            zip(SERVICES, pool.map(lambda name: _run_service(refused, name), SERVICES), strict=True)
        )
    for name, result in results.items():
        output = result.stdout + result.stderr
        assert result.returncode == RET_CONFIG, (name, output)
        errors = [line for line in output.splitlines() if " ERROR " in line]
        assert len(errors) == 1, (name, output)
        assert said in errors[0].lower() or said in errors[0], (name, errors[0])
        assert "Traceback" not in output, (name, output)


def test_doctor_names_an_acl_refusal(acl_settings: Settings) -> None:
    result = run_cli(acl_settings.replace(redis_username="pingonly", redis_password="ping-only"), "doctor")
    assert result.returncode == 1
    assert "redis-producer.acl" in result.stdout, result.stdout


# --- TLS --------------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(cert))  # fmt: skip
    return key, cert


def make_server_cert(directory: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN: the client checks the name), signed by `ca`."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial",
             "-days", "1", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("tls-redis")
    ca = make_ca(directory, "test-ca")
    other_ca = make_ca(directory, "other-ca")
    key, cert = make_server_cert(directory, ca)
    port = free_port()
    server = LocalRedis(
        directory / "data",
        port=port,
        extra_args=("--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                    "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca[1]), "--tls-auth-clients", "no"),
        client_options={"ssl": True, "ssl_ca_certs": str(ca[1])},
    )  # fmt: skip
    try:
        server.start()
    except Exception as exc:  # a redis-server built without TLS says so in its log
        pytest.skip(f"redis-server here cannot serve TLS: {exc}")
    yield {"server": server, "ca": ca[1], "other_ca": other_ca[1]}
    server.stop(kill=True)


def test_the_producer_speaks_tls_to_a_redis_with_its_own_ca(
    settings: Settings, tls_redis: dict[str, Any]
) -> None:
    server: LocalRedis = tls_redis["server"]
    url = f"rediss://{server.host}:{server.port}/0"
    env = {**settings.to_env(), "REDIS_URL": url, "REDIS_SSL_CA_CERTS": str(tls_redis["ca"])}
    tls = Settings.from_env(env, env_file=None)
    assert (tls.redis_ssl, tls.redis_port) == (True, server.port)
    client = redis_client(tls)
    try:
        client.flushall()
        events = make_events(5)
        outbox.enqueue(client, events)
    finally:
        client.close()
    assert relay.run(tls, burst=True) == RET_OK
    assert audit_rows(tls) == {flow_id: 1 for flow_id in flow_ids(events)}
    assert heartbeat.run(tls, burst=True) == RET_OK
    # Plain text to the TLS port is refused, and so is a server whose CA we do not trust.
    plain = redis_client(tls.replace(redis_ssl=False), timeout_s=2)
    try:
        with pytest.raises(redis.RedisError):
            plain.ping()
    finally:
        plain.close()
    untrusted = tls.replace(redis_ssl_ca_certs=str(tls_redis["other_ca"]))
    result = _run_service(untrusted, "heartbeat")
    assert result.returncode == RET_CONFIG, result.stdout + result.stderr
    assert "certificate verify failed" in result.stdout.lower(), result.stdout
    doctor = run_cli(untrusted, "doctor")
    assert doctor.returncode == 1 and "certificate verify failed" in doctor.stdout.lower(), doctor.stdout
