"""Settings for the least-privilege roles, Redis URLs and TLS, and the services' no-.env rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickstockpl.settings import AUDIT_ROLE, BACKTEST_ROLE, READ_ROLE, Settings, SettingsError


def test_a_rediss_url_sets_the_parts_it_names() -> None:
    settings = Settings.from_env({"REDIS_URL": "rediss://tick%40pl:s%3Acret@redis.example:6380/2"}, None)
    assert (settings.redis_host, settings.redis_port, settings.redis_db) == ("redis.example", 6380, 2)
    assert (settings.redis_username, settings.redis_password, settings.redis_ssl) == (
        "tick@pl",
        "s:cret",
        True,
    )
    assert settings.redis_target == "tick@pl@redis.example:6380/2 (TLS)"
    assert "s:cret" not in repr(settings)


def test_a_bad_redis_url_names_the_variable_not_the_password() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_URL": "http://user:topsecret@host"}, None)
    assert "REDIS_URL" in str(caught.value) and "topsecret" not in str(caught.value)


def test_the_services_use_the_audit_role_once_its_password_is_known() -> None:
    settings = Settings(postgres_password="app")
    assert settings.with_service_roles() is settings  # no password generated: as configured
    least = settings.replace(audit_password="a", read_password="r", backtest_password="b")
    services = least.with_service_roles()
    assert (services.postgres_user, services.postgres_password) == (AUDIT_ROLE, "a")
    assert (services.for_reading().postgres_user, services.for_reading().postgres_password) == (
        READ_ROLE,
        "r",
    )
    assert services.for_backtest().postgres_user == BACKTEST_ROLE
    assert least.replace(db_roles="shared").with_service_roles().postgres_user == "app_readwrite"
    assert least.replace(database_uri="postgresql://x").with_service_roles().postgres_user == "app_readwrite"


def test_an_empty_env_file_variable_reads_no_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=from-the-file\n")
    assert Settings.from_env({}, env_file).postgres_password == "from-the-file"
    assert Settings.from_env({"TICKSTOCKPL_ENV_FILE": ""}, env_file).postgres_password == ""
