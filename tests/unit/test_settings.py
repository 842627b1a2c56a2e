from __future__ import annotations

import pytest

from sessionward import ConfigurationError, Settings


def test_library_settings_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONWARD_SESSION_IDLE_TIMEOUT", "5")
    monkeypatch.setenv("SESSIONWARD_STORE", "memory://")
    assert Settings().session_idle_timeout == 1800
    assert Settings.defaults().store.backend == "sqlite"


def test_from_env_reads_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONWARD_SESSION_IDLE_TIMEOUT", "5")
    monkeypatch.setenv("SESSIONWARD_STORE", "redis://127.0.0.1/1")
    settings = Settings.from_env()
    assert settings.session_idle_timeout == 5
    assert settings.store.backend == "redis"
    assert Settings.from_env(session_idle_timeout=7).session_idle_timeout == 7


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SESSIONWARD_SESSION_IDLE_TIMEOUT", "soon", "SESSIONWARD_SESSION_IDLE_TIMEOUT is invalid"),
        ("SESSIONWARD_SESSION_IDLE_TIMEOUT", "-1", "greater than 0"),
        ("SESSIONWARD_SESSIONS_PER_USER", "0", "SESSIONWARD_SESSIONS_PER_USER"),
        ("SESSIONWARD_SESSION_LIMIT_ACTION", "explode", "'evict_oldest' or 'refuse'"),
        ("SESSIONWARD_STORE", "mysql://x", "SESSIONWARD_STORE is invalid: unknown storage URL"),
    ],
)
def test_bad_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env()
    assert says in str(caught.value)


def test_idle_cannot_exceed_absolute() -> None:
    with pytest.raises(ConfigurationError, match="must not exceed"):
        Settings.defaults(session_idle_timeout=100, session_absolute_timeout=10)


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting sesion_idle_timeout"):
        Settings.defaults(sesion_idle_timeout=1)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.sessions_per_user = 3  # type: ignore[misc]
