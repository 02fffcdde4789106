"""Settings: defaults from the integration document, env and .env, masked secrets, named errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickstockpl.patterns.indicators import DEFAULT_RS_BARS, MAX_RS_BARS
from tickstockpl.settings import Settings, SettingsError


def test_defaults_follow_the_integration_document() -> None:
    settings = Settings.from_env({}, env_file=None)
    assert (settings.redis_host, settings.redis_port) == ("localhost", 6379)
    assert (settings.postgres_host, settings.postgres_port) == ("localhost", 5433)
    assert (settings.postgres_db, settings.postgres_user) == ("tickstock", "app_readwrite")
    assert settings.postgres_password == ""
    assert settings.heartbeat_interval_s <= 20  # the consumer counts >= 60 s as offline


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        '# comment\nREDIS_PORT=6390\nexport POSTGRES_PASSWORD="from file"\nPOSTGRES_DB=filedb\n'
    )
    settings = Settings.from_env({"POSTGRES_DB": "envdb"}, env_file=env_file)
    assert settings.redis_port == 6390
    assert settings.postgres_password == "from file"
    assert settings.postgres_db == "envdb"


def test_env_file_reads_as_compose_does(tmp_path: Path) -> None:
    """Inline comments go, quotes go, a `$` in a password stays (no interpolation)."""
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_PORT=6391 # the stack's own\nPOSTGRES_PASSWORD='pa$$word # not a comment'\n")
    settings = Settings.from_env({}, env_file=env_file)
    assert settings.redis_port == 6391
    assert settings.postgres_password == "pa$$word # not a comment"


def test_env_file_line_without_a_value_is_named(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_PORT=6391\nPOSTGRES_PASSWORD\n")
    with pytest.raises(SettingsError, match="POSTGRES_PASSWORD"):
        Settings.from_env({}, env_file=env_file)


def test_repr_masks_secrets() -> None:
    settings = Settings.from_env(
        {"POSTGRES_PASSWORD": "hunter2", "REDIS_PASSWORD": "s3cret", "MASSIVE_API_KEY": "k3y"}, env_file=None
    )
    shown = repr(settings)
    for secret in ("hunter2", "s3cret", "k3y"):
        assert secret not in shown
    assert "postgres_password=***" in shown
    assert "redis_host='localhost'" in shown


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("REDIS_PORT", "abc", "invalid literal"),
        ("POSTGRES_PORT", "70000", "TCP port"),
        ("TICKSTOCKPL_RELAY_BATCH", "0", "greater than 0"),
        ("TICKSTOCKPL_AUDIT_ENABLED", "maybe", "true/false"),
        ("TICKSTOCKPL_SOURCE", "bloomberg", "synthetic"),
        ("TICKSTOCKPL_CRASH_AT", "somewhere", "after_move"),
        ("TICKSTOCKPL_SYNTHETIC_LOOKBACK", "-60", "0 or more"),
        ("TICKSTOCKPL_RS_BARS", "0", "within 1-1000"),
        ("TICKSTOCKPL_RS_BARS", "1001", "within 1-1000"),
        ("TICKSTOCKPL_RS_BARS", "twenty", "invalid literal"),
        ("TICKSTOCKPL_RS_BENCHMARK", "SPY QQQ", "one symbol"),
        ("TICKSTOCKPL_RS_BENCHMARK", "S" * 21, "one symbol"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value}, env_file=None)
    assert str(info.value).startswith(f"{name}=")
    assert reason in str(info.value)


def test_empty_value_means_default() -> None:
    assert Settings.from_env({"REDIS_HOST": "", "REDIS_PORT": ""}, env_file=None).redis_port == 6379


def test_no_timeframes_round_trip_as_none() -> None:
    settings = Settings(timeframes=(), combo_timeframes=())
    assert settings.to_env()["TICKSTOCKPL_TIMEFRAMES"] == "none"
    assert Settings.from_env(settings.to_env(), env_file=None) == settings


def test_to_env_round_trips() -> None:
    settings = Settings(postgres_password="p w'\\x", symbols=("A", "B"), audit_enabled=False, speed=0.0)
    assert Settings.from_env(settings.to_env(), env_file=None) == settings


def test_dsn_quotes_awkward_passwords() -> None:
    import psycopg2.extensions

    settings = Settings(postgres_password="p w'd\\x")
    parsed = psycopg2.extensions.parse_dsn(settings.postgres_dsn)
    assert parsed["password"] == "p w'd\\x"
    assert parsed["port"] == "5433" and parsed["user"] == "app_readwrite"


def test_database_uri_wins() -> None:
    uri = "postgresql://u:p@db:5432/tickstock"
    settings = Settings.from_env({"DATABASE_URI": uri}, env_file=None)
    assert settings.postgres_dsn == uri
    assert "p@db" not in settings.postgres_target


def test_relative_strength_settings() -> None:
    """N and the benchmark of data.indicators.relative_strength; the bound is the engine's."""
    default = Settings.from_env({}, env_file=None)
    assert (default.rs_bars, default.rs_benchmark) == (DEFAULT_RS_BARS, "")  # the equal-weighted universe
    chosen = Settings.from_env(
        {"TICKSTOCKPL_RS_BARS": str(MAX_RS_BARS), "TICKSTOCKPL_RS_BENCHMARK": " SPY "}, env_file=None
    )
    assert (chosen.rs_bars, chosen.rs_benchmark) == (MAX_RS_BARS, "SPY")
    with pytest.raises(SettingsError):
        Settings.from_env({"TICKSTOCKPL_RS_BARS": str(MAX_RS_BARS + 1)}, env_file=None)
