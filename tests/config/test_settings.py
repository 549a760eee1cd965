"""Settings: shipped defaults, TOML over them, environment over that; frozen, validated, hashed."""

from __future__ import annotations

import io

import msgspec
import pytest

from config import ConfigError, LoggingSettings, LogSettings, SessionSettings, Settings, load_settings, settings_hash
from runtime.logger import configure_logging, get_logger
from tests.wording import said_by


def msgspec_on(section: type, key: str, value: object) -> str:
    """What msgspec says about ``key = value`` in a section: our errors carry it, whatever its wording."""
    return said_by(lambda: msgspec.convert({key: value}, section))


def test_the_shipped_defaults_load_and_match_the_struct_defaults():
    assert load_settings(env={}) == Settings()


def test_a_toml_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "tape.toml"
    path.write_text('[log]\nsync = "interval"\nsync_interval_ms = 20\n')
    settings = load_settings(path, env={})
    assert (settings.log.sync, settings.log.sync_interval_ms, settings.log.target) == ("interval", 20, "runs")


def test_environment_variables_override_the_file_with_toml_typed_values(tmp_path):
    path = tmp_path / "tape.toml"
    path.write_text('[log]\nsync = "interval"\n')
    env = {"TAPE__LOG__SYNC": "none", "TAPE__LOG__QUEUE_BATCHES": "8", "TAPE__SESSION__VENUE": "kalshi-demo", "HOME": "/x"}
    settings = load_settings(path, env=env)
    assert (settings.log.sync, settings.log.queue_batches, settings.session.venue) == ("none", 8, "kalshi-demo")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TAPE__LOG__SYNC": "sometimes"},
         f"shipped defaults + environment: log.sync = 'sometimes': {msgspec_on(LogSettings, 'sync', 'sometimes')} "
         "(valid values: 'batch', 'interval', 'none')"),
        ({"TAPE__LOG__SEGMENT_BYTES": "12"},
         f"shipped defaults + environment: log.segment_bytes = 12: {msgspec_on(LogSettings, 'segment_bytes', 12)}"),
        ({"TAPE__LOG__QUEUE_BATCHES": "many"},
         f"shipped defaults + environment: log.queue_batches = 'many': {msgspec_on(LogSettings, 'queue_batches', 'many')}"),
        ({"TAPE__LOG__SYN": "batch"}, "shipped defaults + environment: unknown setting log.syn; check its spelling against config/defaults.toml"),
        ({"TAPE__FOO__BAR": "1"}, "shipped defaults + environment: unknown setting foo; check its spelling against config/defaults.toml"),
        ({"TAPE__LOGSYNC": "batch"}, "environment variable TAPE__LOGSYNC: expected TAPE__SECTION__KEY, e.g. TAPE__LOG__SYNC"),
    ],
)
def test_bad_settings_name_the_key_and_the_value(env, message):
    with pytest.raises(ConfigError) as info:
        load_settings(env=env)
    assert str(info.value) == message


def test_a_bad_file_is_named(tmp_path):
    path = tmp_path / "tape.toml"
    path.write_text("[log\n")
    with pytest.raises(ConfigError, match=f"^{path}: not valid TOML"):
        load_settings(path, env={})
    with pytest.raises(ConfigError, match="cannot read the settings file"):
        load_settings(tmp_path / "missing.toml", env={})
    path.write_text('[session]\nseed = -1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}: session.seed = -1: {msgspec_on(SessionSettings, 'seed', -1)}"


def test_an_unknown_top_level_key_in_a_file_is_named(tmp_path):
    path = tmp_path / "tape.toml"
    path.write_text("x = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert str(info.value) == f"{path}: unknown setting x; check its spelling against config/defaults.toml"


def test_settings_are_frozen():
    settings = load_settings(env={})
    with pytest.raises(AttributeError):
        settings.log = None  # type: ignore[misc]


def test_the_hash_is_stable_and_changes_with_any_setting():
    a = settings_hash(load_settings(env={}))
    assert a == settings_hash(load_settings(env={})) and len(a) == 64
    assert a != settings_hash(load_settings(env={"TAPE__SESSION__SEED": "1"}))
    assert msgspec.json.decode(msgspec.json.encode(Settings()), type=Settings) == Settings()


def test_diagnostics_are_json_lines_when_not_on_a_terminal():
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="info", format="auto"), stream=stream)
    get_logger("log", session="s1").warning("torn tail truncated", bytes=5)
    get_logger("log").debug("not shown at info")
    (line,) = stream.getvalue().splitlines()
    event = msgspec.json.decode(line)
    assert {k: event[k] for k in ("event", "level", "component", "session", "bytes")} == {
        "event": "torn tail truncated", "level": "warning", "component": "log", "session": "s1", "bytes": 5}


def test_diagnostics_are_readable_on_a_console():
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="console"), stream=stream)
    get_logger("log").info("opened", seq=3)
    assert "opened" in stream.getvalue() and "seq=3" in stream.getvalue() and not stream.getvalue().startswith("{")


def test_the_order_flow_model_is_a_settings_section_in_the_hash():
    """[synth] holds the local exchange's model: an override changes the session's config hash."""
    base = load_settings(env={})
    tuned = load_settings(env={"TAPE__SYNTH__JUMP_RATE": "0.002"})
    assert tuned.synth.jump_rate == 0.002 and settings_hash(tuned) != settings_hash(base)
    with pytest.raises(ConfigError, match="FlowConfig: fair_min must be <= fair_max$"):
        load_settings(env={"TAPE__SYNTH__FAIR_MIN": "0.9", "TAPE__SYNTH__FAIR_MAX": "0.2"})
