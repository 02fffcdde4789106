"""The whole stack in containers (docker-compose.yml), brought up as `make up` does in Docker mode, on
free published ports, and seen only from outside: the published Redis, PostgreSQL, /metrics and
Prometheus ports, and the Docker API. Skipped, with one line, where no Docker daemon answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import docker_available
from tests.e2e.composeutil import ComposeProject
from tests.e2e.stackutil import Subscriber, prometheus_query, scrape
from tests.support import poll
from tickstockpl import contract

pytestmark = pytest.mark.e2e
if not docker_available():
    pytest.skip(
        "no Docker daemon answers (TICKSTOCKPL_TEST_DOCKER=never, or none running)", allow_module_level=True
    )

# Fast enough to see many events, kills and restarts within minutes; recovery after 5 s.
PRODUCER_SETTINGS = {
    "TICKSTOCKPL_SPEED": "600",
    "TICKSTOCKPL_HEARTBEAT_INTERVAL": "1",
    "TICKSTOCKPL_ALIVE_ROW_INTERVAL": "5",
    "TICKSTOCKPL_HEALTH_INTERVAL": "5",
    "TICKSTOCKPL_RELAY_STALE_AFTER": "5",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """The stack up (as `make up`), removed with its volumes afterwards whatever happened."""
    stack = ComposeProject.create(tmp_path_factory.mktemp("compose"), **PRODUCER_SETTINGS)
    started = time.monotonic()
    up = stack.cli("up", "--timeout", "240")
    print(f"\n`tickstockpl up` (Docker mode) took {time.monotonic() - started:.1f} s")
    try:
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        stack.up_output = up.stdout
        yield stack
    finally:
        stack.cli("down", "--volumes")
        for container in stack.containers():  # only if down itself failed
            container.remove(force=True, v=True)
        stack.client.close()


def events_valid_and_audited(stack: ComposeProject, count: int) -> set[str]:
    """Read `count` events on the published Redis port; each valid and with exactly one audit row."""
    with Subscriber(stack.redis()) as subscriber:
        poll(lambda: len(subscriber.messages) >= count, 120, f"{count} pattern events")
        events = [contract.decode_pattern_event(raw) for raw in subscriber.messages]
    flow_ids = {event["data"]["flow_id"] for event in events}
    assert len(flow_ids) == len(events)
    poll(lambda: flow_ids <= dict(stack.published_rows()).keys(), 30, "an audit row for every event")
    rows = dict(stack.published_rows())
    assert all(rows[flow_id] == 1 for flow_id in flow_ids)
    return flow_ids


def test_up_starts_four_healthy_services_and_says_where_to_look(project: ComposeProject) -> None:
    services = {c.labels["com.docker.compose.service"]: c for c in project.containers()}
    assert set(services) == {"postgres", "redis", "producer", "prometheus"}
    for name in ("postgres", "redis", "producer"):
        assert project.healthy(name), name
    assert project.state("prometheus")["Running"]
    output = project.up_output
    redis_port = project.port("REDIS_PUBLISHED_PORT")
    assert f"redis-cli -p {redis_port} SUBSCRIBE {contract.CHANNEL_PATTERNS}" in output
    assert project.metrics_url in output and project.prometheus_url in output


def test_the_producer_image_runs_unprivileged_with_no_secret_in_it(project: ComposeProject) -> None:
    producer = project.container("producer")
    code, uid = producer.exec_run(["id", "-u"])
    assert code == 0 and uid.decode().strip() != "0"
    code, ps = producer.exec_run(["sh", "-c", "cat /proc/1/status"])
    assert b"Uid:\t0\t" not in ps  # supervisord (PID 1) is not root either
    image = project.client.images.get(producer.attrs["Config"]["Image"])
    baked = " ".join(image.attrs["Config"]["Env"] or [])
    assert "PASSWORD" not in baked and "SECRET" not in baked
    assert image.attrs["Config"]["Healthcheck"]["Test"][-3:] == ["tickstockpl", "heartbeat", "--check"]
    code, listing = producer.exec_run(["sh", "-c", "ls -a /app; ls /app/var"])
    assert code == 0
    assert not {".venv", "tests", ".git", ".env"} & set(listing.decode().split())
    print(f"producer image {image.tags}: {image.attrs['Size'] / 1e6:.0f} MB")


def test_events_on_the_published_port_are_valid_and_audited(project: ComposeProject) -> None:
    flow_ids = events_valid_and_audited(project, 20)
    print(f"{len(flow_ids)} events on the published Redis port, each with one PATTERN_PUBLISHED row")


def test_up_again_changes_nothing(project: ComposeProject) -> None:
    before = {c.name: c.attrs["State"]["StartedAt"] for c in project.containers()}
    again = project.cli("up", "--timeout", "120")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = {c.name: c.attrs["State"]["StartedAt"] for c in project.containers()}
    assert after == before


def test_prometheus_container_scrapes_the_producer(project: ComposeProject) -> None:
    base = project.prometheus_url
    up = poll(lambda: prometheus_query(base, 'up{job="tickstockpl"} == 1'), 90, "the producer target up")
    assert up[0]["metric"]["instance"] == "producer:9108"
    dependencies = poll(lambda: prometheus_query(base, "tickstockpl_up == 1"), 60, "tickstockpl_up")
    assert {series["metric"]["dependency"] for series in dependencies} == {"redis", "postgres"}
    published = poll(
        lambda: prometheus_query(base, "tickstockpl_patterns_published_total > 0"), 60, "published series"
    )
    assert all(series["metric"]["pattern"] for series in published)
    assert prometheus_query(base, "tickstockpl_heartbeat_age_seconds")


def metric_sum(project: ComposeProject, name: str) -> float:
    try:
        return sum(value for (sample, _), value in scrape(project.metrics_url).items() if sample == name)
    except OSError:  # the producer is restarting
        return -1.0


def restart_killed_producer(project: ComposeProject) -> None:
    """`docker kill` (SIGKILL to every process in it), then start it again and wait until healthy."""
    producer = project.container("producer")
    started_at = producer.attrs["State"]["StartedAt"]
    producer.kill()
    poll(
        lambda: (
            not project.state("producer")["Running"] or project.state("producer")["StartedAt"] != started_at
        ),
        30,
        "the killed producer to stop",
    )
    if not project.state("producer")["Running"]:  # Docker leaves a killed container stopped
        producer.start()
    poll(lambda: project.healthy("producer"), 120, "the producer to be healthy again")


@pytest.mark.timeout(900)
def test_kill_of_the_producer_and_restart_of_postgres_lose_and_duplicate_nothing(
    project: ComposeProject,
) -> None:
    with Subscriber(project.redis()) as subscriber:
        for round_number in range(2):
            before = metric_sum(project, "tickstockpl_patterns_published_total")
            poll(
                lambda before=before: metric_sum(project, "tickstockpl_patterns_published_total") > before,
                90,
                "the relay to publish (work in hand)",
            )
            restart_killed_producer(project)
            print(f"round {round_number}: producer killed and back")
        project.container("postgres").restart(timeout=30)
        poll(lambda: project.healthy("postgres"), 120, "postgres healthy after its restart")
        after_restart = metric_sum(project, "tickstockpl_patterns_published_total")
        poll(
            lambda: metric_sum(project, "tickstockpl_patterns_published_total") > after_restart,
            120,
            "publishing to go on after the postgres restart",
        )
        # Quiesce: stop the source, let the relay drain, then count.
        code, output = project.supervisorctl("stop", "tickstockpl:detector-0")
        assert code == 0, output

        def drained() -> bool:
            samples = scrape(project.metrics_url)
            depths = (
                "tickstockpl_outbox_depth",
                "tickstockpl_processing_depth",
                "tickstockpl_audit_backlog_depth",
            )
            return all(samples.get((name, ())) == 0.0 for name in depths)

        poll(drained, 120, "the outbox, processing list and audit backlog to drain")
        seen = {contract.decode_pattern_event(raw)["data"]["flow_id"] for raw in subscriber.messages}
    samples = scrape(project.metrics_url)
    enqueued = int(samples[("tickstockpl_outbox_enqueued_total", ())])
    rows = project.published_rows()
    audited = {flow_id for flow_id, _ in rows}
    duplicates = sum(count - 1 for _, count in rows)
    lost = enqueued - len(audited)
    print(
        f"docker kill x2 + postgres restart: events={enqueued} seen_by_subscriber={len(seen)}"
        f" audited={len(audited)} lost={lost} duplicated={duplicates}"
    )
    assert samples[("tickstockpl_dead_letters", ())] == 0.0
    assert duplicates == 0
    assert lost == 0
    assert seen <= audited
    code, output = project.supervisorctl("start", "tickstockpl:detector-0")
    assert code == 0, output


def test_docker_stop_is_graceful_within_the_grace_period(project: ComposeProject) -> None:
    producer = project.container("producer")
    started = time.monotonic()
    producer.stop(timeout=45)  # compose's stop_grace_period
    took = time.monotonic() - started
    state = project.state("producer")
    logs = producer.logs(tail=40).decode(errors="replace")
    print(f"docker stop of the producer: {took:.1f} s, exit code {state['ExitCode']}")
    assert state["ExitCode"] == 0, logs
    assert "stopped: relay (exit status 0)" in logs
    producer.start()
    poll(lambda: project.healthy("producer"), 120, "the producer healthy again")


def test_a_taken_port_fails_before_anything_starts(tmp_path: Path) -> None:
    other = ComposeProject.create(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        other.env["REDIS_PUBLISHED_PORT"] = str(taken)
        try:
            result = other.cli("up", "--timeout", "30")
            assert result.returncode == 78, result.stdout + result.stderr
            assert f"127.0.0.1:{taken} (redis) is taken: set REDIS_PUBLISHED_PORT" in result.stdout
            assert other.containers() == [] and other.networks() == []
        finally:
            other.cli("down", "--volumes")
            other.client.close()


def test_down_leaves_no_container_and_no_network(project: ComposeProject) -> None:
    down = project.cli("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert project.containers() == []
    assert project.networks() == []
    volumes = project.client.volumes.list(filters={"label": f"com.docker.compose.project={project.name}"})
    assert len(volumes) == 3  # kept unless asked: `make down VOLUMES=1`
