"""broker.settings.Settings: precedence, conversion, the derived URL, and the docs listing every setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.settings import Settings, SettingsError, split_address

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.env_vars():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_defaults() -> None:
    s = Settings.load()
    assert s.host == "127.0.0.1"
    assert s.port == 8000
    assert s.token_ttl == 3600
    assert s.data_dir == Path(s.data_dir)
    assert s.url == "http://127.0.0.1:8000"


def test_default_data_dir_follows_xdg_data_home(tmp_path: Path) -> None:
    s = Settings.load()
    assert s.data_dir == tmp_path / "xdg" / "pair-broker"
    assert s.database_path.parent == s.data_dir
    assert s.keys_dir.parent == s.data_dir


def test_flag_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load().port == 8000
    monkeypatch.setenv("PAIR_BROKER_PORT", "9000")
    assert Settings.load().port == 9000
    assert Settings.load(port=7000).port == 7000
    # A flag left unset (None) does not hide the environment.
    assert Settings.load(port=None).port == 9000


def test_env_values_are_converted_to_the_field_types(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PAIR_BROKER_PORT", "9001")
    monkeypatch.setenv("PAIR_BROKER_SESSION_TTL", "60")
    monkeypatch.setenv("PAIR_BROKER_DATA_DIR", str(tmp_path / "data"))
    s = Settings.load()
    assert s.port == 9001
    assert isinstance(s.port, int)
    assert s.session_ttl == 60
    assert s.data_dir == tmp_path / "data"
    assert s.database_path == tmp_path / "data" / "broker.db"


def test_data_dir_expands_the_home_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PAIR_BROKER_DATA_DIR", "~/broker")
    assert Settings.load().data_dir == tmp_path / "home" / "broker"


@pytest.mark.parametrize("value", ["abc", "1.5", "", "10s"])
def test_bad_int_in_env_is_a_settings_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PAIR_BROKER_PORT", value)
    with pytest.raises(SettingsError) as info:
        Settings.load()
    assert "port" in str(info.value).lower()
    assert repr(value) in str(info.value)


def test_bad_int_in_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAIR_BROKER_TOKEN_TTL", "1h")
    with pytest.raises(SettingsError, match="PAIR_BROKER_TOKEN_TTL"):
        Settings.load()


def test_negative_number_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAIR_BROKER_SESSION_TTL", "-1")
    with pytest.raises(SettingsError, match=r"(?i)session_ttl"):
        Settings.load()


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("broker.internal", 80, "http://broker.internal:80"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000"),  # noqa: S104 - a bind-all host is the case under test
        ("::", 9000, "http://127.0.0.1:9000"),
        ("::1", 8000, "http://[::1]:8000"),
        ("fd00::5", 8443, "http://[fd00::5]:8443"),
    ],
)
def test_url_derives_from_host_and_port(host: str, port: int, url: str) -> None:
    assert Settings.load(host=host, port=port).url == url


def test_public_url_wins_and_loses_its_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAIR_BROKER_PUBLIC_URL", "https://pair.example.com/")
    s = Settings.load(host="0.0.0.0", port=9000)  # noqa: S104 - public_url must win over it
    assert s.url == "https://pair.example.com"


def test_token_ttl_above_the_maximum_is_refused() -> None:
    with pytest.raises(SettingsError, match="PAIR_BROKER_MAX_TOKEN_TTL"):
        Settings.load(token_ttl=7201, max_token_ttl=7200)
    assert Settings.load(token_ttl=7200, max_token_ttl=7200).token_ttl == 7200


def test_token_ttl_from_env_above_the_default_maximum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAIR_BROKER_TOKEN_TTL", str(86400 + 1))
    with pytest.raises(SettingsError):
        Settings.load()


def test_every_setting_has_a_distinct_env_var() -> None:
    env_vars = Settings.env_vars()
    assert len(env_vars) == len(set(env_vars.values()))
    assert all(name.startswith("PAIR_BROKER_") for name in env_vars)
    assert {"PAIR_BROKER_HOST", "PAIR_BROKER_PORT", "PAIR_BROKER_PUBLIC_URL"} <= set(env_vars)


def test_operations_doc_lists_every_env_var() -> None:
    doc = REPO / "docs" / "operations.md"
    assert doc.is_file(), f"{doc} is missing: it must list every broker setting"
    text = doc.read_text(encoding="utf-8")
    missing = [name for name in Settings.env_vars() if name not in text]
    assert missing == [], f"docs/operations.md does not mention {missing}"


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), ("localhost:9464", ("localhost", 9464))],
)
def test_metrics_address_is_host_and_port(address: str, expected: tuple[str, int]) -> None:
    assert Settings.load(metrics_address=address).metrics_address == address
    assert split_address("--metrics-address", address) == expected


@pytest.mark.parametrize("address", ["9464", "::1:9464", "127.0.0.1:", "127.0.0.1:70000", "a b:1", "[foo]:1", ":9464"])
def test_a_metrics_address_that_is_not_host_and_port_is_refused_by_name(
    address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAIR_BROKER_METRICS_ADDRESS", address)
    with pytest.raises(SettingsError, match=r"PAIR_BROKER_METRICS_ADDRESS must be HOST:PORT"):
        Settings.load()


def test_there_is_no_metrics_listener_by_default() -> None:
    assert Settings.load().metrics_address == ""


def test_the_database_is_the_data_dirs_sqlite_file_unless_a_url_names_another(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAIR_BROKER_DATA_DIR", str(tmp_path / "data"))
    assert Settings.load().database_location == tmp_path / "data" / "broker.db"
    monkeypatch.setenv("PAIR_BROKER_DATABASE_URL", "postgresql://pair:pw@db.example.com/pair")
    assert Settings.load().database_location == "postgresql://pair:pw@db.example.com/pair"
    assert Settings.load(database=f"sqlite://{tmp_path}/other.db").database_location == tmp_path / "other.db"
    monkeypatch.setenv("PAIR_BROKER_DATABASE_URL", "mysql://pair:pw@db/pair")
    with pytest.raises(SettingsError, match=r"^The setting PAIR_BROKER_DATABASE_URL is not a usable database URL"):
        Settings.load()


def test_the_encryption_key_is_never_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAIR_BROKER_ENCRYPTION_KEY", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg==")
    assert "c2VjcmV0" not in repr(Settings.load())
