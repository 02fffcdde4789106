"""Every supervised program, seen from /proc: no superuser secret in its environment, the audit
role as its database user, and an unprivileged uid when `make up` runs as root (issue 13, finding 8)."""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest

from tests.e2e.stackutil import RunningStack
from tickstockpl.local_servers import ensure_service_user
from tickstockpl.settings import AUDIT_ROLE
from tickstockpl.stack.base import ROOT
from tickstockpl.stack.supervisord import PROCESSES

pytestmark = pytest.mark.e2e

SECRET_NAMES = ("POSTGRES_ADMIN_URI", "POSTGRES_SUPERUSER_PASSWORD")
FAKE_ADMIN_URI = "host=127.0.0.1 port=1 user=postgres password=not-for-services dbname=postgres"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])  # the real uid; effective and saved follow it
    raise AssertionError(f"no Uid line for {pid}")


def test_no_program_holds_a_superuser_secret_or_runs_as_root(
    start_stack: Callable[..., AbstractContextManager[RunningStack]],
    store_overrides: Callable[[], dict[str, Any]],
) -> None:
    # Container stores come with their superuser's URI (a random password), which `up` needs; with
    # local stores `up` starts its own PostgreSQL and uses its socket, and a URI nothing answers at
    # must still not reach a service.
    admin = store_overrides().get("postgres_admin_uri") or FAKE_ADMIN_URI
    admin_password = psycopg2.extensions.parse_dsn(admin)["password"]
    with start_stack(postgres_admin_uri=admin) as running:
        status = running.status()
        expected_user = running.stack.service_user
        expected_uid = pwd.getpwnam(expected_user).pw_uid
        for name in PROCESSES:
            state, pid = status[f"tickstockpl:{name}"]
            assert state == "RUNNING" and pid > 0, status
            env = environ_of(pid)
            assert not [key for key in SECRET_NAMES if key in env], (name, sorted(env))
            assert admin_password not in "\n".join(env.values()), name
            assert env["POSTGRES_USER"] == AUDIT_ROLE, name
            assert env["TICKSTOCKPL_ENV_FILE"] == "", name
            assert uid_of(pid) == expected_uid, (name, expected_user)
        if "stores:postgres" in status:
            assert uid_of(status["stores:postgres"][1]) != 0
    if os.geteuid() == 0 and expected_user == "root":
        # The only way the services run as root: the service user cannot run our interpreter. The
        # reason must be real (here: a pyenv Python under /root, mode 0700), and `up` said so.
        problem = ensure_service_user(running.settings.service_user, os.path.realpath(sys.executable), ROOT)
        assert problem is not None and "cannot run" in problem
        pytest.xfail(f"services ran as root on this machine: {problem}")
    if os.geteuid() == 0:
        assert expected_uid != 0
