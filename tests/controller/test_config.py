"""Settings: environment over env file over defaults, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.config import Settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("FLEETGATE_HOME", "FLEETGATE_BIND", "FLEETGATE_REDIS_URL", "FLEETGATE_DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings()
    assert settings.bind == "127.0.0.1:8700"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.home == Path("/var/lib/fleetgate")  # the tests run as root
    assert settings.db_url == "sqlite:////var/lib/fleetgate/fleetgate.db"


def test_environment_beats_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "fleetgate.env"
    env_file.write_text("FLEETGATE_BIND=0.0.0.0:9000\nFLEETGATE_HOME=/srv/fg\n")
    monkeypatch.setenv("FLEETGATE_BIND", "127.0.0.1:9100")
    settings = Settings(_env_file=env_file)
    assert settings.bind == "127.0.0.1:9100"
    assert settings.home == Path("/srv/fg")
    assert settings.port == 9100


@pytest.mark.parametrize("bind", ["8700", "localhost", ":8700", "127.0.0.1:99999", "127.0.0.1:http"])
def test_a_bad_bind_is_refused_with_an_example(bind: str) -> None:
    with pytest.raises(ValidationError, match=r"127\.0\.0\.1:8700"):
        Settings(bind=bind)
