"""load_config: a valid config with its defaults, env substitution, locations, the error report."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from engine.config import ConfigError, Problem, summary
from engine.config import load_config as _load_config
from engine.config.spec import plain

from .settings import config_registry

STORE_DEFAULTS = {
    "stop_timeout": 10.0,
    "storage": "everything",
    "retention": {"max_age": None, "rules": [], "compact_after": 3600.0, "interval": 600.0,
                  "batch_size": 500, "max_batches": 100, "pause": 0.01},
    "encryption": None,
}  # fmt: skip


def load_config(path, **kw):
    """The config layer alone: the engine's listener sources, no step or destination kinds
    (those have their own tests), so channel contents are taken as written."""
    kw.setdefault("registry", config_registry())
    return _load_config(path, **kw)


FIXTURES = Path(__file__).parent / "config_fixtures"
ALL_VERSIONS = [
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1",
    "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2",
]  # fmt: skip


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.format().splitlines()


@pytest.fixture
def basic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the complete example in tmp_path, which is also the current directory."""
    shutil.copytree(FIXTURES / "basic", tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWITCHBOARD_ADMIN_TOKEN", raising=False)
    return tmp_path


def test_complete_example_loads_with_defaults_filled(basic: Path) -> None:
    config = load_config("routes.yaml")

    assert config.path == basic / "routes.yaml"
    assert config.base_dir == basic
    assert config.store == f"sqlite:///{basic}/var/switchboard.db"
    assert plain(config.store_options) == {
        "synchronous": "normal", "max_batch": 500, "inline_commit": True, "checkpoint_rows": 300,
        "gather_time": 0.002, "pool_size": 5,
        "lease_ttl": 15.0, "poll_interval": 1.0, **STORE_DEFAULTS}  # fmt: skip
    assert config.channels_dir == basic / "channels"
    assert plain(config.admin) == {
        "listen": "tcp:8481:interface=127.0.0.1",
        "token": None,
        "tls": None,
    }
    assert plain(config.logging) == {"level": "debug", "format": "auto"}

    lab, drop = config.listeners
    assert plain(lab) == {
        "name": "lab-in",
        "mllp": "tcp:2575",
        "directory": None,
        "tls": {
            "cert": basic / "certs/server-cert.placeholder",
            "key": basic / "certs/server-key.placeholder",
            "client_ca": basic / "certs/ca.placeholder",
            "require_client_cert": "want",
            "min_version": "1.2",
        },
        "ack": "after_routing",
        "enhanced_ack": True,
        "charset": "utf-8",
        "versions": ALL_VERSIONS,
        "processing_ids": ["P", "T", "D"],
        "duplicate_window": 86400.0,
        "on_conflicting_duplicate": "reject",
        "max_frame_size": 65536,
        "frame_timeout": 0.25,
        "idle_timeout": 300.0,
        "max_connections": 100,
        "allow_addresses": [],
        "allow_subjects": [],
        "require_end_of_data": True,
        "normalize_newlines": True,
        "poll_interval": None,
        "settle_time": None,
        "pattern": None,
    }
    assert plain(drop) == {
        "name": "drop",
        "mllp": None,
        "directory": basic / "drop/in",
        "tls": None,
        "ack": "on_receipt",
        "enhanced_ack": True,
        "charset": "iso-8859-1",
        "versions": ALL_VERSIONS,
        "processing_ids": ["P", "T", "D"],
        "duplicate_window": 86400.0,
        "on_conflicting_duplicate": "reject",
        "max_frame_size": None,
        "frame_timeout": None,
        "idle_timeout": None,
        "max_connections": None,
        "allow_addresses": None,
        "allow_subjects": None,
        "require_end_of_data": None,
        "normalize_newlines": True,
        "poll_interval": 1.0,
        "settle_time": 1.5,
        "pattern": "*.hl7",
    }


def test_routes_and_channels_of_the_complete_example(basic: Path) -> None:
    config = load_config(basic / "routes.yaml")

    keys = "listener type trigger sending_application sending_facility version processing_id when"
    no_match = dict.fromkeys(keys.split())
    assert plain(config.routes) == [
        {"name": None, "match": {**no_match, "listener": ["lab-in"], "type": ["ORU"]},
         "to": ["lab-results"]},
        {"name": "all-adt",
         "match": {**no_match, "type": ["ADT"], "trigger": ["A01", "A08"], "version": ["2.5"]},
         "to": ["adt-to-fhir"]},
        {"name": None, "match": no_match, "to": ["lab-results", "adt-to-fhir"]},
    ]  # fmt: skip
    assert sorted(config.channels) == ["adt-to-fhir", "lab-results"]
    lab = config.channels["lab-results"]
    assert config.channel_files["lab-results"] == basic / "channels/lab-results.yaml"
    assert lab.description == "Lab results to Epic"
    assert plain(lab.steps) == [
        {"kind": "filter", "config": {"field": "MSH-4", "in": ["QUEST", "LABCORP"]}},
        {"kind": "translate",
         "config": {"field": "OBX-3", "table": "lab-to-loinc", "keep_original": True}},
        {"kind": "python", "config": "transforms.lab:normalize_units"},
    ]  # fmt: skip
    assert plain(lab.destinations) == [
        {"name": "epic", "kind": None, "mllp": "tcp:epic.example.org:6661", "ack_timeout": "30s"}
    ]


def test_where_gives_the_source_of_a_value(basic: Path) -> None:
    config = load_config("routes.yaml")

    assert config.where(("listeners", 0, "mllp")) == "routes.yaml:6:11"
    assert config.where(("listeners", 1, "directory")) == "routes.yaml:14:16"
    assert config.where(("routes", 1, "match", "trigger", 1)) == "routes.yaml:24:39"
    assert config.where(("channels", "lab-results", "steps", 1, "config", "table")) == (
        "channels/lab-results.yaml:5:38"
    )
    assert config.where(("channels", "lab-results", "steps", 2, "kind")) == (
        "channels/lab-results.yaml:6:5"
    )
    # A defaulted value has no source of its own: its parent's is given.
    assert config.where(("listeners", 1, "poll_interval")) == "routes.yaml:13:5"
    assert config.where(("nowhere",)) == "routes.yaml"
    location = config.location(("admin", "listen"))
    assert (location.file, location.line, location.column) == (str(basic / "routes.yaml"), 18, 11)


def test_summary_of_the_complete_example(basic: Path) -> None:
    config = load_config("routes.yaml")

    assert summary(config) == textwrap.dedent(f"""\
        routes.yaml: OK
        store: sqlite:///{basic}/var/switchboard.db
        listeners (2):
          lab-in  mllp tcp:2575 tls>=1.2 client-cert=want  ack=after_routing
          drop    directory drop/in (*.hl7)  ack=on_receipt
        routes: 3
        channels (2): adt-to-fhir, lab-results
        admin: tcp:8481:interface=127.0.0.1 (no token)""")


def test_minimal_config_gets_every_default(tmp_path: Path) -> None:
    routes = write(tmp_path, "routes.yaml", "listeners: [{name: a, mllp: 'tcp:2575'}]\n")

    config = load_config(routes)

    assert config.store == f"sqlite:///{tmp_path}/var/switchboard.db"
    assert plain(config.store_options) == {
        "synchronous": "full", "max_batch": 2000, "inline_commit": True, "checkpoint_rows": 300,
        "gather_time": 0.002, "pool_size": 5,
        "lease_ttl": 15.0, "poll_interval": 1.0, **STORE_DEFAULTS}  # fmt: skip
    assert config.admin is None
    assert plain(config.logging) == {"level": "info", "format": "auto"}
    assert config.routes == []
    assert config.channels == {}
    listener = config.listeners[0]
    assert (listener.frame_timeout, listener.max_frame_size) == (10.0, 16 * 1024 * 1024)
    assert (listener.ack, listener.charset, listener.tls) == (
        "on_receipt",
        "iso-8859-1",
        None,
    )


def test_empty_routes_file_is_a_valid_empty_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "routes.yaml", ""))

    assert (config.listeners, config.routes, config.channels) == ([], [], {})


def test_admin_is_off_unless_given(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "routes.yaml", "admin: null\n")).admin is None
    assert load_config(write(tmp_path, "routes.yaml", "logging: {}\n")).admin is None
    assert plain(load_config(write(tmp_path, "routes.yaml", "admin: {}\n")).admin) == {
        "listen": "tcp:8480:interface=127.0.0.1",
        "token": None,
        "tls": None,
    }


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("sqlite:///var/x.db", "sqlite:///{base}/var/x.db"),
        ("sqlite:///../x.db", "sqlite:///{parent}/x.db"),
        ("sqlite:////data/x.db", "sqlite:////data/x.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite+pysqlite:///x.db?timeout=5", "sqlite+pysqlite:///{base}/x.db?timeout=5"),
        ("postgresql+psycopg://sb:pw@db/sb", "postgresql+psycopg://sb:pw@db/sb"),
    ],
)
def test_store_url(tmp_path: Path, store: str, expected: str) -> None:
    base = tmp_path / "srv"
    config = load_config(write(base, "routes.yaml", f"store: '{store}'\n"))

    assert config.store == expected.format(base=base, parent=tmp_path)


def test_summary_masks_the_store_password(tmp_path: Path) -> None:
    routes = write(
        tmp_path,
        "routes.yaml",
        """
        store: postgresql+psycopg://sb:s3cret@db.example.org/sb
        admin: {listen: "unix:/run/sb.sock", token: abc}
        """,
    )

    text = summary(load_config(routes))

    assert "s3cret" not in text
    assert "store: postgresql+psycopg://sb:***@db.example.org/sb" in text.splitlines()
    assert "admin: unix:/run/sb.sock (token required)" in text.splitlines()
    assert "listeners (0):" in text.splitlines()


def test_environment_variables_are_substituted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_TOKEN", "t0ken")
    monkeypatch.setenv("SB_PORT", "2600")
    monkeypatch.setenv("SB_EMPTY", "")
    monkeypatch.delenv("SB_UNSET", raising=False)
    routes = write(
        tmp_path,
        "routes.yaml",
        """
        store: "postgresql://sb:${SB_UNSET:-pw}@db/sb"
        admin: {token: "${SB_TOKEN}", listen: "tcp:${SB_PORT}"}
        listeners:
          - name: a-${SB_EMPTY:-x}
            mllp: tcp:2575
            max_connections: ${SB_PORT}
        """,
    )
    write(tmp_path, "channels/c.yaml", "name: c\ndescription: costs $${SB_TOKEN} and ${SB_TOKEN}\n")

    config = load_config(routes)

    assert config.store == "postgresql://sb:pw@db/sb"
    assert plain(config.admin) == {"token": "t0ken", "listen": "tcp:2600", "tls": None}
    assert config.listeners[0].name == "a-x"
    # An unquoted value is typed after substitution: max_connections is an int.
    assert config.listeners[0].max_connections == 2600
    # `$${` stands for a literal `${`.
    assert config.channels["c"].description == "costs ${SB_TOKEN} and t0ken"


def test_unset_environment_variable_is_an_error_at_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWITCHBOARD_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("FHIR_TOKEN", raising=False)
    write(tmp_path, "routes.yaml", "admin:\n  token: ${SWITCHBOARD_ADMIN_TOKEN}\n")
    write(tmp_path, "channels/c.yaml", "name: c\ndescription: 'Bearer ${FHIR_TOKEN}'\n")

    assert errors_of(tmp_path / "routes.yaml") == [
        "channels/c.yaml:2:14: environment variable 'FHIR_TOKEN' is not set",
        "routes.yaml:2:10: environment variable 'SWITCHBOARD_ADMIN_TOKEN' is not set",
        "2 errors in 2 files.",
    ]


def test_errors_of_two_files_are_reported_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        "routes.yaml",
        """
        listeners:
          - name: lab-in
            mllp: "tcp:2575"
          - name: adt-in
            mllp: "tcp:2575"
        routes:
          - {match: {listener: lab-in}, to: [lab-resluts]}
        """,
    )
    write(
        tmp_path,
        "channels/lab-results.yaml",
        """
        name: lab-results
        steps:
          - filter: {field: MSH-4}
        destinatons: []
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_config("routes.yaml")

    assert caught.value.format("nothing was started.") == textwrap.dedent("""\
        channels/lab-results.yaml:4:1: unknown key 'destinatons' in channel 'lab-results'; \
did you mean 'destinations'?
        routes.yaml:5:11: listeners 'lab-in' and 'adt-in' both bind tcp:2575
        routes.yaml:7:38: unknown channel 'lab-resluts'; did you mean 'lab-results'?
        3 errors in 2 files; nothing was started.""")
    assert caught.value.problems[0] == Problem(
        str(tmp_path / "channels/lab-results.yaml"),
        4,
        1,
        "unknown key 'destinatons' in channel 'lab-results'; did you mean 'destinations'?",
    )


def test_paths_outside_the_current_directory_are_shown_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    routes = write(tmp_path, "conf/routes.yaml", "logging: {level: loud}\n")

    assert errors_of(routes) == [
        f"{routes}:1:18: invalid value 'loud' for 'level' (allowed: debug, info, warning, error)",
        "1 error in 1 file.",
    ]


def test_a_missing_routes_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    write(tmp_path, "channels/broken.yaml", "name: [broken\n")  # not looked at

    assert errors_of(tmp_path / "routes.yaml") == ["routes.yaml: file not found"]
    assert errors_of(tmp_path / "channels") == ["channels: is a directory, not a file"]
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "routes.yaml")
    assert caught.value.format("nothing was started.") == (
        "routes.yaml: file not found; nothing was started."
    )


def test_channels_dir_and_test_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "routes.yaml", "channels_dir: pipelines\nroutes: [{to: a}]\n")
    write(tmp_path, "pipelines/a.yaml", "name: a\n")
    write(tmp_path, "pipelines/a_test.yaml", "tests: []\n")
    write(tmp_path, "pipelines/notes.txt", "not a channel\n")

    config = load_config("routes.yaml")

    assert config.channels_dir == tmp_path / "pipelines"
    assert list(config.channels) == ["a"]

    write(tmp_path, "routes.yaml", "channels_dir: missing\n")
    assert errors_of(tmp_path / "routes.yaml") == [
        "routes.yaml:1:15: channels directory not found: missing",
        "1 error in 1 file.",
    ]
