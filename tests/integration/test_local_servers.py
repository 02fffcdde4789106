"""The local-binary servers behind the fixtures and `make up`: a server that dies says why."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tickstockpl.local_servers import LocalRedis, LocalServerError


def test_a_redis_that_cannot_start_fails_with_its_log_not_a_timeout(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LocalRedis(tmp_path / "redis", port=taken.getsockname()[1])
        with pytest.raises(LocalServerError, match="redis-server exited") as info:
            server.start(timeout_s=60)
    assert "timed out" not in str(info.value)
    assert "Address already in use" in str(info.value) or "bind" in str(info.value).lower()
