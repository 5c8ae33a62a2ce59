"""Every kind of config error, with its exact text and file:line:column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.config import ConfigError, Field, Registry, Spec, load_config
from engine.config.fieldtypes import Duration, EndpointString, FreeMapping, Int, String
from engine.config.spec import plain

from .settings import config_registry


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(name: str, text: str) -> None:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))


def errors(routes: str, registry: Registry | None = None, **channels: str) -> list[str]:
    """The problem lines of loading `routes` (and channels/NAME.yaml files)."""
    write("routes.yaml", routes)
    for name, text in channels.items():
        write(f"channels/{name}.yaml", text)
    with pytest.raises(ConfigError) as caught:
        # the config layer alone (listener sources; steps and destinations as given)
        load_config("routes.yaml", registry=registry or config_registry())
    lines = caught.value.format().splitlines()
    return lines[:-1]


def listener(extra: str, name: str = "lab-in", source: str = 'mllp: "tcp:2575"') -> str:
    body = "\n".join(f"    {line}" for line in textwrap.dedent(extra).strip().splitlines())
    return f"listeners:\n  - name: {name}\n    {source}\n{body}\n"


def registry() -> Registry:
    """Step and destination kinds as the step and destination modules would register them."""
    reg = config_registry()
    reg.add(
        "step",
        "translate",
        Spec(
            "translate",
            "Replace codes through a table.",
            (
                Field("field", String(), required=True),
                Field("table", String(), required=True),
            ),
        ),
    )
    reg.add("step", "set", FreeMapping())
    reg.add(
        "step",
        "python",
        Spec("python", "Call a function.", (Field("function", String()),), shorthand="function"),
    )
    reg.add(
        "destination",
        "mllp",
        Spec(
            "mllp",
            "Send over MLLP.",
            (
                Field("mllp", EndpointString(server=False), required=True),
                Field("ack_timeout", Duration(), default="30s"),
                Field("retry", FreeMapping()),
            ),
        ),
    )
    reg.add(
        "destination",
        "fhir",
        Spec("fhir", "POST FHIR bundles.", (Field("fhir", String(), required=True),)),
    )
    return reg


# unknown keys --------------------------------------------------------------------------


def test_unknown_key_with_a_suggestion() -> None:
    assert errors(listener("frame_timout: 5s")) == [
        "routes.yaml:4:5: unknown key 'frame_timout' in listener 'lab-in'; "
        "did you mean 'frame_timeout'?"
    ]


def test_unknown_keys_at_the_top_and_without_a_suggestion_list_the_valid_keys() -> None:
    assert errors("listners: []\nwhatever: 1\n") == [
        "routes.yaml:1:1: unknown key 'listners' in routes.yaml; did you mean 'listeners'?",
        "routes.yaml:2:1: unknown key 'whatever' in routes.yaml; valid keys: store, "
        "store_options, channels_dir, listeners, admin, logging, routes",
    ]


def test_far_unknown_names_list_what_is_valid() -> None:
    lines = errors(
        listener("when_idle: 5s") + "routes:\n  - {match: {when: {feld: PV1-2, xx: 1}}, to: a}\n",
        registry(),
        a="name: a\nsteps:\n  - zap: {}\n",
    )
    assert lines == [
        "channels/a.yaml:3:5: unknown step kind 'zap' in step 1; step kinds: python, set, "
        "translate",
        "routes.yaml:4:5: unknown key 'when_idle' in listener 'lab-in'; valid keys: name, mllp, "
        "directory, ack, enhanced_ack, charset, versions, processing_ids, duplicate_window, "
        "on_conflicting_duplicate, normalize_newlines, tls, max_frame_size, frame_timeout, "
        "idle_timeout, max_connections, allow_addresses, allow_subjects, require_end_of_data, "
        "poll_interval, settle_time, pattern",
        "routes.yaml:6:21: unknown key 'feld' in 'when'; did you mean 'field'?",
        "routes.yaml:6:34: unknown key 'xx' in 'when'; valid keys: field, equals, not_equals, "
        "in, not_in, regex, exists, all, any, not",
    ]


def test_unknown_key_in_nested_mappings() -> None:
    assert errors(
        """
        admin: {tokn: x}
        routes:
          - {match: {tpye: ADT}, to: []}
        """
    ) == [
        "routes.yaml:1:9: unknown key 'tokn' in admin; did you mean 'token'?",
        "routes.yaml:3:14: unknown key 'tpye' in match of route 1; did you mean 'type'?",
        "routes.yaml:3:30: 'to' must not be empty",
    ]


def test_unknown_key_in_a_registered_step() -> None:
    lines = errors(
        "",
        registry(),
        lab="""
        name: lab-results
        steps:
          - set: {MSH-5: EPIC}
          - translate:
              feild: OBX-3
              table: lab-to-loinc
        """,
    )

    # The misspelt key is reported once: not also as a missing 'field'.
    assert lines == [
        "channels/lab.yaml:5:7: unknown key 'feild' in step 2 (translate); did you mean 'field'?"
    ]


# wrong types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_connections: lots", "expected int for 'max_connections', got string 'lots'"),
        ("max_connections: 1.5", "expected int for 'max_connections', got float '1.5'"),
        ("max_connections: true", "expected int for 'max_connections', got bool 'true'"),
        ("enhanced_ack: maybe", "expected bool for 'enhanced_ack', got string 'maybe'"),
        ("enhanced_ack: 1", "expected bool for 'enhanced_ack', got int '1'"),
        ("charset: [utf-8]", "expected charset for 'charset', got list"),
        ("versions: {a: 1}", "expected list of string for 'versions', got mapping"),
        ("charset: null", "expected charset for 'charset', got null"),
        ("tls: on", "expected mapping for 'tls', got bool 'on'"),
    ],
)
def test_wrong_type(line: str, message: str) -> None:
    assert errors(listener(line)) == [f"routes.yaml:4:{len(line.split(':')[0]) + 7}: {message}"]


def test_wrong_type_of_a_list_item() -> None:
    assert errors(listener("versions: ['2.5', [2.6]]")) == [
        "routes.yaml:4:23: expected string for item 2 of 'versions', got list"
    ]


def test_top_level_must_be_a_mapping() -> None:
    assert errors("- a\n- b\n") == [
        "routes.yaml:1:1: expected mapping for the top level, got list",
    ]


# required keys, exclusive keys ---------------------------------------------------------


def test_missing_required_key() -> None:
    assert errors('listeners:\n  - mllp: "tcp:2575"\nroutes:\n  - match: {}\n') == [
        "routes.yaml:2:5: missing required key 'name' in listener 1",
        "routes.yaml:4:5: missing required key 'to' in route 1",
    ]


def test_a_listener_needs_exactly_one_of_mllp_and_directory() -> None:
    assert errors(
        """
        listeners:
          - name: none
          - name: both
            mllp: "tcp:2575"
            directory: in
        """
    ) == [
        "routes.yaml:2:5: listener 'none' needs one of 'mllp' or 'directory'",
        "routes.yaml:5:5: listener 'both' has both 'mllp' and 'directory'; keep only one",
    ]


def test_mllp_keys_on_a_directory_listener_and_the_other_way_round() -> None:
    lines = errors(
        """
        listeners:
          - name: drop
            directory: in
            frame_timeout: 5s
            tls: null
          - name: lab-in
            mllp: "tcp:2575"
            settle_time: 1s
        """
    )

    assert lines == [
        "routes.yaml:4:5: key 'frame_timeout' only applies with 'mllp'; listener 'drop' uses "
        "'directory'",
        "routes.yaml:5:5: key 'tls' only applies with 'mllp'; listener 'drop' uses 'directory'",
        "routes.yaml:8:5: key 'settle_time' only applies with 'directory'; listener 'lab-in' "
        "uses 'mllp'",
    ]


# enums ---------------------------------------------------------------------------------


def test_bad_enum_value_lists_the_allowed_values() -> None:
    assert errors(listener("ack: on_recipt\nprocessing_ids: [P, X]")) == [
        "routes.yaml:4:10: invalid value 'on_recipt' for 'ack' (allowed: on_receipt, "
        "after_routing); did you mean 'on_receipt'?",
        "routes.yaml:5:25: invalid value 'X' for item 2 of 'processing_ids' (allowed: P, T, D)",
    ]


def test_enums_take_the_text_written_even_where_yaml_reads_a_bool() -> None:
    write("cert.pem", "x")
    write(
        "routes.yaml",
        """
        store_options: {synchronous: off}
        listeners:
          - name: a
            mllp: "tcp:1"
            tls: {cert: cert.pem, key: cert.pem, client_ca: cert.pem, require_client_cert: yes}
          - name: b
            mllp: "tcp:2"
            tls: {cert: cert.pem, key: cert.pem, require_client_cert: false, min_version: 1.3}
          - name: c
            mllp: "tcp:3"
            tls: {cert: cert.pem, key: cert.pem, client_ca: cert.pem}
            processing_ids: [p, T]
            ack: AFTER_ROUTING
        """,
    )

    config = load_config("routes.yaml", registry=config_registry())

    assert config.store_options.synchronous == "off"
    tls = [item.tls for item in config.listeners]
    assert [(t.require_client_cert, t.min_version) for t in tls] == [
        ("require", "1.2"),
        ("none", "1.3"),
        ("want", "1.2"),
    ]
    assert config.listeners[2].processing_ids == ["P", "T"]
    assert config.listeners[2].ack == "after_routing"


def test_client_certificates_need_a_client_ca() -> None:
    write("cert.pem", "x")
    assert errors(listener("tls: {cert: cert.pem, key: cert.pem, require_client_cert: true}")) == [
        "routes.yaml:4:10: require_client_cert 'require' needs 'client_ca' in tls of listener "
        "'lab-in'"
    ]


# values --------------------------------------------------------------------------------


def test_values_out_of_range() -> None:
    assert errors(
        listener("max_frame_size: 512\nmax_connections: 0")
        + "store_options: {max_batch: 100001, gather_time: 1s}\n"
    ) == [
        "routes.yaml:4:21: 'max_frame_size' must be at least 1KiB, got 512",
        "routes.yaml:5:22: 'max_connections' must be at least 1, got 0",
        "routes.yaml:6:28: 'max_batch' must be between 1 and 100000, got 100001",
        "routes.yaml:6:49: 'gather_time' must be at most 0.1s, got 1s",
    ]


def test_bad_durations_and_sizes() -> None:
    assert errors(listener("frame_timeout: 10 sec\nmax_frame_size: 16 MB/s")) == [
        "routes.yaml:4:20: expected duration for 'frame_timeout', got string '10 sec'; "
        "write seconds or a number with ms, s, m, h or d, like 30s",
        "routes.yaml:5:21: expected size for 'max_frame_size', got string '16 MB/s'; "
        "write bytes or a number with B, KB, MB, GB, KiB, MiB or GiB, like 16MiB",
    ]


def test_names_charsets_and_files() -> None:
    assert errors(
        listener("charset: latin-9\ntls: {cert: missing.pem, key: .}", name="'lab in'")
    ) == [
        "routes.yaml:2:11: invalid value 'lab in' for 'name': use only letters, digits, '_', '.' "
        "and '-'",
        "routes.yaml:4:14: unknown charset 'latin-9' for 'charset'; did you mean 'latin-1'?",
        "routes.yaml:5:17: file not found for 'cert': missing.pem",
        "routes.yaml:5:35: expected a file for 'key', but . is a directory",
    ]


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (
            "ssl:2575",
            "invalid endpoint 'ssl:2575' for 'mllp': 'ssl:' cannot require client certificates; "
            "use 'tcp:PORT' and a 'tls:' section instead",
        ),
        (
            "tpc:2575",
            "invalid endpoint 'tpc:2575' for 'mllp': unknown endpoint type 'tpc' "
            "(expected tcp, tcp6, unix); did you mean 'tcp'?",
        ),
        (
            "tcp:99999",
            "invalid endpoint 'tcp:99999' for 'mllp': port must be a number from 0 to 65535, "
            "got '99999'",
        ),
        (
            "tcp:2575:interfce=127.0.0.1",
            "invalid endpoint 'tcp:2575:interfce=127.0.0.1' for 'mllp': unknown option "
            "'interfce' for 'tcp:'; did you mean 'interface'?",
        ),
        ("2575", "expected endpoint string for 'mllp', got int '2575'; did you mean 'tcp:2575'?"),
    ],
)
def test_bad_endpoints(endpoint: str, message: str) -> None:
    assert errors(f"listeners:\n  - name: a\n    mllp: {endpoint}\n") == [
        f"routes.yaml:3:11: {message}"
    ]


def test_unsupported_store_hides_the_password() -> None:
    assert errors("store: mysql://sb:s3cret@db/sb\n") == [
        "routes.yaml:1:8: unsupported store 'mysql://sb:***@db/sb' for 'store': "
        "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    ]


# YAML itself ---------------------------------------------------------------------------


def test_duplicate_keys_are_reported_at_the_second_one() -> None:
    assert errors(
        """
        logging:
          level: info
          format: json
          level: debug
        """,
        lab="name: lab\nname: lab2\n",
    ) == [
        "channels/lab.yaml:2:1: duplicate key 'name'",
        "routes.yaml:4:3: duplicate key 'level'",
    ]


def test_yaml_syntax_error_at_the_mark_pyyaml_gives() -> None:
    assert errors(
        "listeners:\n  - name: a\n    mllp: tcp:2575\n   bad: indentation\n",
        lab="name: lab\nsteps: [a, b\n",
    ) == [
        "channels/lab.yaml:3:1: YAML syntax error: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 2)",
        "routes.yaml:4:4: YAML syntax error: expected <block end>, but found "
        "'<block mapping start>' (while parsing a block collection at line 2)",
    ]


def test_environment_reference_errors() -> None:
    assert errors('admin: {token: "${SB_NOT_SET_ANYWHERE", listen: "tcp:${1X}"}\n') == [
        "routes.yaml:1:16: unclosed '${' in value; write '$${' for a literal '${'",
        "routes.yaml:1:49: invalid environment variable reference '${1X}'",
    ]


# cross checks --------------------------------------------------------------------------


def test_port_clashes() -> None:
    assert errors(
        """
        listeners:
          - {name: a, mllp: "tcp:2575"}
          - {name: b, mllp: "tcp:2575:interface=127.0.0.1"}
          - {name: c, mllp: "tcp:2576:interface=127.0.0.1"}
          - {name: d, mllp: "tcp:2576:interface=10.0.0.1"}
          - {name: e, mllp: "tcp:0"}
          - {name: f, mllp: "tcp:0"}
          - {name: g, mllp: "tcp:port=2576:interface=10.0.0.1"}
          - {name: h, mllp: "unix:/run/sb.sock"}
          - {name: i, mllp: "unix:/run/sb.sock"}
        admin: {listen: "tcp:2576:interface=127.0.0.1"}
        """
    ) == [
        "routes.yaml:3:21: listeners 'a' and 'b' both bind tcp:2575:interface=127.0.0.1",
        "routes.yaml:8:21: listeners 'd' and 'g' both bind tcp:2576:interface=10.0.0.1",
        "routes.yaml:10:21: listeners 'h' and 'i' both bind unix:/run/sb.sock",
        "routes.yaml:11:17: listener 'c' and the admin API both bind tcp:2576:interface=127.0.0.1",
    ]


def test_default_admin_port_clash_is_reported_at_the_listener() -> None:
    assert errors('listeners: [{name: a, mllp: "tcp:8480"}]\nadmin: {}\n') == [
        "routes.yaml:1:29: listener 'a' and the admin API both bind tcp:8480:interface=127.0.0.1"
    ]


def test_directory_clash_and_duplicate_listener_names() -> None:
    assert errors(
        """
        listeners:
          - {name: a, directory: drop/in}
          - {name: b, directory: ./drop/in/}
          - {name: a, mllp: "tcp:1"}
        """
    ) == [
        "routes.yaml:3:26: listeners 'a' and 'b' both read drop/in",
        "routes.yaml:4:12: duplicate listener name 'a' (first at routes.yaml:2:12)",
    ]


def test_routes_name_known_channels_and_listeners() -> None:
    assert errors(
        """
        listeners: [{name: lab-in, mllp: "tcp:2575"}]
        routes:
          - {match: {listener: [lab-in, lab-inn]}, to: lab-resluts}
          - {match: {listener: x}, to: [lab-results, zzz]}
        """,
        lab="name: lab-results\n",
    ) == [
        "routes.yaml:3:33: unknown listener 'lab-inn'; did you mean 'lab-in'?",
        "routes.yaml:3:48: unknown channel 'lab-resluts'; did you mean 'lab-results'?",
        "routes.yaml:4:24: unknown listener 'x'; listeners: lab-in",
        "routes.yaml:4:46: unknown channel 'zzz'; channels: lab-results",
    ]


def test_a_channel_with_errors_still_counts_as_known_to_routes() -> None:
    assert errors("routes: [{to: lab}]\n", lab="name: lab\nstesp: []\n") == [
        "channels/lab.yaml:2:1: unknown key 'stesp' in channel 'lab'; did you mean 'steps'?"
    ]


def test_duplicate_channel_names() -> None:
    assert errors("", a="name: lab\n", b="description: copy\nname: lab\n") == [
        "channels/b.yaml:2:7: duplicate channel name 'lab' (first at channels/a.yaml:1:7)"
    ]


# channels: steps and destinations ------------------------------------------------------


def test_steps_are_one_key_mappings() -> None:
    assert errors(
        "",
        lab="""
        name: lab
        steps:
          - filter: {field: MSH-4}
            set: {MSH-5: X}
          - transforms.lab:fn
        """,
    ) == [
        "channels/lab.yaml:3:5: step 1 must be a mapping with one key, its kind "
        "(like '- filter: ...'), got 2 keys",
        "channels/lab.yaml:5:5: step 2 must be a mapping with one key, its kind "
        "(like '- filter: ...'), got string 'transforms.lab:fn'",
    ]


def test_registered_steps_are_validated() -> None:
    assert errors(
        "",
        registry(),
        lab="""
        name: lab
        steps:
          - transalte: {field: OBX-3}
          - translate: {field: OBX-3}
          - set: [MSH-5]
          - python: 12
          - python: {function: [a]}
        """,
    ) == [
        "channels/lab.yaml:3:5: unknown step kind 'transalte' in step 1; did you mean 'translate'?",
        "channels/lab.yaml:4:16: missing required key 'table' in step 2 (translate)",
        "channels/lab.yaml:5:10: expected mapping for 'set', got list",
        "channels/lab.yaml:7:24: expected string for 'function', got list",
    ]


def test_destinations_without_a_registry() -> None:
    assert errors(
        "",
        lab="""
        name: lab
        destinations:
          - {name: epic, mllp: "tcp:epic:6661"}
          - {name: epic, fhir: "https://fhir"}
          - {fhir: "https://fhir"}
          - just-a-name
        """,
    ) == [
        "channels/lab.yaml:4:12: duplicate destination name 'epic' in channel 'lab'",
        "channels/lab.yaml:5:5: missing required key 'name' in destination 3",
        "channels/lab.yaml:6:5: expected mapping for destination 4, got string",
    ]


def test_registered_destinations_are_validated() -> None:
    assert errors(
        "",
        registry(),
        lab="""
        name: lab
        destinations:
          - {name: epic, mlp: "tcp:epic:6661"}
          - {name: both, mllp: "tcp:epic:6661", fhir: "https://fhir"}
          - {name: slow, mllp: "tcp:epic:6661", ack_timeout: forever}
          - {name: bad, mllp: "ssl:epic:6661"}
        """,
    ) == [
        "channels/lab.yaml:3:5: destination 'epic' needs one of: fhir, mllp; did you mean 'mllp'?",
        "channels/lab.yaml:4:41: destination 'both' has both 'mllp' and 'fhir'; keep only one",
        "channels/lab.yaml:5:54: expected duration for 'ack_timeout', got string 'forever'; "
        "write seconds or a number with ms, s, m, h or d, like 30s",
        "channels/lab.yaml:6:23: invalid endpoint 'ssl:epic:6661' for 'mllp': 'ssl:' does not "
        "check the peer certificate; use 'tls:HOST:PORT' instead",
    ]


def test_registered_kinds_are_normalised(tmp_path: Path) -> None:
    write(
        "channels/lab.yaml",
        """
        name: lab
        steps:
          - python: transforms.lab:fn
          - set: {MSH-5: EPIC, MSH-6: 12}
        destinations:
          - {name: epic, mllp: "tcp:epic:6661", ack_timeout: 1m}
        """,
    )
    write("routes.yaml", "routes: [{to: lab}]\n")

    config = load_config("routes.yaml", registry=registry())
    channel = config.channels["lab"]

    assert plain(channel.steps) == [
        {"kind": "python", "config": {"function": "transforms.lab:fn"}},
        {"kind": "set", "config": {"MSH-5": "EPIC", "MSH-6": 12}},
    ]
    assert [d.kind for d in channel.destinations] == ["mllp"]
    assert plain(channel.destinations) == [
        {"name": "epic", "mllp": "tcp:epic:6661", "ack_timeout": 60.0, "retry": None},
    ]  # fmt: skip
    assert config.channel_files["lab"] == tmp_path / "channels/lab.yaml"


def test_many_problems_in_one_pass() -> None:
    lines = errors(
        listener("ack: never\nframe_timeout: soon\nmax_connections: -1")
        + "logging: {level: loud, format: xml}\nroutes: [{to: nowhere}]\n",
        lab="name: lab\nsteps: 3\n",
        other="name: 'bad name'\n",
    )

    assert [line.split(": ", 1)[0] for line in lines] == [
        "channels/lab.yaml:2:8",
        "channels/other.yaml:1:7",
        "routes.yaml:4:10",
        "routes.yaml:5:20",
        "routes.yaml:6:22",
        "routes.yaml:7:18",
        "routes.yaml:7:32",
        "routes.yaml:8:15",
    ]


def test_the_count_line() -> None:
    write("routes.yaml", "logging: {level: loud}\n")
    with pytest.raises(ConfigError) as caught:
        load_config("routes.yaml", registry=config_registry())

    assert caught.value.format("nothing was started.").splitlines()[-1] == (
        "1 error in 1 file; nothing was started."
    )
    assert str(caught.value).splitlines()[-1] == "1 error in 1 file."


def test_int_spec_for_registered_kinds_is_declarative() -> None:
    reg = registry()
    reg.add("step", "delay", Spec("delay", "Wait.", (Field("ms", Int(min=0), default=0),)))
    write("channels/lab.yaml", "name: lab\nsteps: [{delay: {}}, {delay: {ms: -1}}]\n")
    write("routes.yaml", "")

    with pytest.raises(ConfigError) as caught:
        load_config("routes.yaml", registry=reg)

    assert caught.value.format().splitlines() == [
        "channels/lab.yaml:2:35: 'ms' must be at least 0, got -1",
        "1 error in 1 file.",
    ]
