"""The pieces under load_config: units, endpoints, the YAML loader, specs, docs, JSON Schema."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.components import REGISTRY
from engine.config import (
    ConfigError,
    Field,
    Problem,
    Registry,
    Spec,
    describe,
    describe_all,
    load_config,
    load_yaml,
    to_json_schema,
)
from engine.config.endpoints import Endpoint, parse_endpoint
from engine.config.fieldtypes import FreeMapping, Int, ListOf, String, StrOrList
from engine.config.loader import substitute
from engine.config.routes_spec import LISTENER_FIELDS
from engine.config.scalars import format_duration, format_size, parse_duration, parse_size

from .settings import config_registry, listener_fields

FIXTURES = Path(__file__).parent / "config_fixtures"
ACK_FIELD = next(f for f in LISTENER_FIELDS if f.name == "ack")

# units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("2 s", 2.0),
        ("0", 0.0),
        ("10", 10.0),
        ("0.5", 0.5),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10 sec", "-1", "-1s", "1x", "nan", "inf", "1h-5m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64KiB", 65536),
        ("16MiB", 16 * 1024 * 1024),
        ("1GiB", 1024**3),
        ("1GB", 1_000_000_000),
        ("10kb", 10_000),
        ("1.5KiB", 1536),
        ("2 MiB", 2 * 1024 * 1024),
        ("512B", 512),
        ("1024", 1024),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "1.5", "-1", "1 XB", "1KiBs", "ten"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_units() -> None:
    assert [format_duration(s) for s in (0, 0.25, 1.5, 90, 3600, 86400)] == [
        "0s",
        "250ms",
        "1500ms",
        "90s",
        "1h",
        "1d",
    ]
    assert [format_size(n) for n in (1000, 1024, 16 * 1024**2, 3 * 1024**3)] == [
        "1000B",
        "1KiB",
        "16MiB",
        "3GiB",
    ]


def test_durations_and_sizes_in_a_listener(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "listeners:\n"
        "  - {name: a, mllp: 'tcp:1', duplicate_window: 0, frame_timeout: 1.5,"
        " idle_timeout: 1h30m, max_frame_size: 1048576}\n"
        "  - {name: b, directory: in, poll_interval: 250ms, settle_time: '3'}\n"
    )

    a, b = load_config(routes, registry=config_registry()).listeners

    assert (a.duplicate_window, a.frame_timeout, a.idle_timeout) == (0.0, 1.5, 5400.0)
    assert a.max_frame_size == 1048576
    assert (b.poll_interval, b.settle_time) == (0.25, 3.0)


# endpoints -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("tcp:2575", Endpoint("tcp", "", 2575)),
        ("tcp:0", Endpoint("tcp", "", 0)),
        (
            "tcp:port=2575:interface=127.0.0.1:backlog=50",
            Endpoint("tcp", "127.0.0.1", 2575, options={"interface": "127.0.0.1", "backlog": "50"}),
        ),
        (
            "tcp6:2575:interface=\\:\\:1",
            Endpoint("tcp6", "::1", 2575, options={"interface": "::1"}),
        ),
        (
            "unix:/run/sb.sock:mode=660",
            Endpoint("unix", path="/run/sb.sock", options={"mode": "660"}),
        ),
    ],
)
def test_parse_server_endpoint(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("tcp:epic.example.org:6661", Endpoint("tcp", "epic.example.org", 6661)),
        ("tcp:host=h:port=1:timeout=5", Endpoint("tcp", "h", 1, options={"timeout": "5"})),
        ("tls:epic.example.org:6661", Endpoint("tls", "epic.example.org", 6661)),
        ("unix:/run/peer.sock", Endpoint("unix", path="/run/peer.sock")),
    ],
)
def test_parse_client_endpoint(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text, server=False) == endpoint


@pytest.mark.parametrize(
    ("text", "server", "reason"),
    [
        ("unix:", True, "expected exactly one socket path, like 'unix:/run/switchboard.sock'"),
        ("tcp:", True, "expected exactly one port, like 'tcp:2575'"),
        ("tcp:1:2", True, "expected exactly one port, like 'tcp:2575'"),
        ("tcp:1:backlog=x", True, "backlog must be a number from 1 to 1048576, got 'x'"),
        ("tls:2575", True, "unknown endpoint type 'tls' (expected tcp, tcp6, unix)"),
        ("2575", True, "no endpoint type; did you mean 'tcp:2575'?"),
        ("tcp:epic", False, "expected a host and a port, like 'tcp:host.example.org:6661'"),
        ("tcp:epic:0", False, "port must be a number from 1 to 65535, got '0'"),
        (
            "ssl:epic:1",
            False,
            "'ssl:' does not check the peer certificate; use 'tls:HOST:PORT' instead",
        ),
    ],
)
def test_parse_endpoint_refuses(text: str, server: bool, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_endpoint(text, server=server)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        ("tcp:2575", "tcp:2575", True),
        ("tcp:2575", "tcp:2575:interface=10.0.0.1", True),
        ("tcp:2575:interface=10.0.0.1", "tcp6:2575:interface=\\:\\:", True),
        ("tcp:2575:interface=10.0.0.1", "tcp:2575:interface=10.0.0.2", False),
        ("tcp:2575", "tcp:2576", False),
        ("tcp:0", "tcp:0", False),
        ("unix:/a", "unix:/a", True),
        ("unix:/a", "unix:/b", False),
    ],
)
def test_endpoint_clashes(first: str, second: str, clash: bool) -> None:
    assert parse_endpoint(first).binds_same_as(parse_endpoint(second)) is clash
    assert parse_endpoint(second).binds_same_as(parse_endpoint(first)) is clash


# the YAML loader -----------------------------------------------------------------------


def test_substitute() -> None:
    env = {"A": "1", "EMPTY": ""}

    assert substitute("x${A}y${A}", env) == ("x1y1", [])
    assert substitute("${MISSING:-d e f}|${EMPTY:-fallback}|${EMPTY}", env) == (
        "d e f|fallback|",
        [],
    )
    assert substitute("$${A} $$ $A", env) == ("${A} $$ $A", [])
    assert substitute("${MISSING}", env) == (
        "${MISSING}",
        ["environment variable 'MISSING' is not set"],
    )


def test_merge_keys_and_anchors(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        textwrap.dedent("""\
        listeners:
          - &lab {name: a, mllp: "tcp:1", ack: after_routing, charset: utf-8}
          - <<: *lab
            name: b
            mllp: "tcp:2"
        """)
    )

    a, b = load_config(routes, registry=config_registry()).listeners

    assert (b.name, b.mllp, b.ack, b.charset) == (
        "b",
        "tcp:2",
        "after_routing",
        "utf-8",
    )
    assert a.name == "a"


def test_load_yaml_keeps_marks_and_reports_bad_bytes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("a:\n  b: [1, 2]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: caf\xe9\n")

    root, problems = load_yaml(good)
    assert problems == []
    value = root.value[0][1].value[0][1]
    assert (value.start_mark.line, value.start_mark.column) == (1, 5)

    assert load_yaml(bad) == (None, [Problem(str(bad), 2, 7, "file is not UTF-8 text")])


def test_values_through_env_keep_the_location_of_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SB_PORT", "not-a-number")
    (tmp_path / "routes.yaml").write_text('listeners:\n  - {name: a, mllp: "tcp:${SB_PORT}"}\n')

    with pytest.raises(ConfigError) as caught:
        load_config("routes.yaml", registry=config_registry())

    assert caught.value.format().splitlines()[0] == (
        "routes.yaml:2:21: invalid endpoint 'tcp:not-a-number' for 'mllp': port must be a "
        "number from 0 to 65535, got 'not-a-number'"
    )


# errors --------------------------------------------------------------------------------


def test_config_error_sorts_counts_and_shows_whole_file_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    error = ConfigError(
        [
            Problem(str(tmp_path / "b.yaml"), 2, 1, "second"),
            Problem(str(tmp_path / "a.yaml"), 10, 3, "third"),
            Problem(str(tmp_path / "a.yaml"), 9, 30, "first"),
            Problem(str(tmp_path / "c.yaml"), 0, 0, "cannot read file: Permission denied"),
        ]
    )

    assert error.format("nothing was started.").splitlines() == [
        "a.yaml:9:30: first",
        "a.yaml:10:3: third",
        "b.yaml:2:1: second",
        "c.yaml: cannot read file: Permission denied",
        "4 errors in 3 files; nothing was started.",
    ]
    two = ConfigError([Problem("/x/a.yaml", 1, 1, "one"), Problem("/x/a.yaml", 2, 1, "two")])
    assert two.format().splitlines()[-1] == "2 errors in 1 file."
    assert two.format().splitlines()[0] == "/x/a.yaml:1:1: one"


# specs ---------------------------------------------------------------------------------

PLUGIN = Spec(
    "plugin",
    "A test spec.",
    (
        Field("name", String(), "Its name.", required=True, example="p1"),
        Field("count", Int(min=1, max=9), "How many.", default=3),
        Field("tags", StrOrList(), "Tags."),
        Field("env", FreeMapping(), "Variables."),
        Field("sizes", ListOf(Int()), "Sizes.", default=[1, 2]),
    ),
    label_key="name",
)


def test_a_spec_validates_fills_defaults_and_normalises(tmp_path: Path) -> None:
    reg = Registry()
    reg.add("step", "plugin", PLUGIN)
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels/c.yaml").write_text(
        "name: c\nsteps:\n  - plugin: {name: p, tags: one, env: {A: 1, B: x}}\n"
        "  - plugin: {name: q, count: 9, tags: [a, b], sizes: []}\n"
    )
    (tmp_path / "routes.yaml").write_text("")

    steps = load_config(tmp_path / "routes.yaml", registry=reg).channels["c"].steps

    assert [step.config.as_dict() for step in steps] == [
        {"name": "p", "count": 3, "tags": ["one"], "env": {"A": 1, "B": "x"}, "sizes": [1, 2]},
        {"name": "q", "count": 9, "tags": ["a", "b"], "env": None, "sizes": []},
    ]


def test_registry_refuses_clashing_kinds() -> None:
    reg = Registry()
    reg.add("step", "plugin", PLUGIN)
    reg.add("step", "plugin", PLUGIN)  # the same spec again is harmless

    with pytest.raises(ValueError, match="step kind 'plugin' is already registered"):
        reg.add("step", "plugin", FreeMapping())
    with pytest.raises(ValueError, match="needs a field named 'queue'"):
        reg.add("destination", "queue", PLUGIN)
    with pytest.raises(ValueError, match="unknown role 'sink'"):
        reg.add("sink", "queue", PLUGIN)


def test_describe_renders_fields_defaults_and_examples() -> None:
    assert describe(PLUGIN) == textwrap.dedent("""\
        plugin
        ======
        A test spec.

          name (string; required)
              Its name.
              example: p1
          count (int from 1 to 9; default: 3)
              How many.
          tags (string or list of string; optional)
              Tags.
          env (mapping of string to scalar; optional)
              Variables.
          sizes (list of int; default: [1, 2])
              Sizes.""")


def test_describe_all_covers_routes_channels_and_registered_kinds() -> None:
    reg = config_registry()
    reg.add("step", "plugin", PLUGIN)
    reg.add("step", "set", FreeMapping())

    text = describe_all(reg)

    lines = text.splitlines()
    for heading in ("routes.yaml", "listener", "tls", "admin", "route", "match", "channel"):
        assert heading in lines
        assert "=" * len(heading) == lines[lines.index(heading) + 1]
    assert "step: plugin" in lines
    assert "  - set: mapping of string to scalar" in lines
    assert (
        "  frame_timeout (duration (like 250ms, 30s, 5m, 1h, 1d; a bare number is seconds); "
        "default: 10s; only with mllp)"
    ) in lines
    assert (
        "  require_client_cert (one of none, want, require (true = require, false = none); "
        "default: want when client_ca is given, else none)"
    ) in lines
    assert (
        "  on_conflicting_duplicate (one of ack_first, process, reject; default: reject)"
    ) in lines
    for name in listener_fields():
        assert any(line.startswith(f"  {name} (") for line in lines), name


# JSON Schema ---------------------------------------------------------------------------

KEYWORDS = {
    "$schema", "title", "description", "type", "properties", "required", "additionalProperties",
    "items", "minItems", "enum", "anyOf", "oneOf", "pattern", "minimum", "maximum", "default",
    "examples", "format", "dependentRequired", "minProperties", "maxProperties",
}  # fmt: skip
TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def check_schema(schema: Any, where: str = "#") -> None:
    """A structural check of a JSON Schema (draft 2020-12) in the subset the specs use."""
    assert isinstance(schema, dict), where
    assert set(schema) <= KEYWORDS, (where, set(schema) - KEYWORDS)
    types = schema.get("type", [])
    assert set([types] if isinstance(types, str) else types) <= TYPES, where
    for key in ("anyOf", "oneOf"):
        if key in schema:
            assert isinstance(schema[key], list) and schema[key], where
            for index, sub in enumerate(schema[key]):
                check_schema(sub, f"{where}/{key}/{index}")
    for name, sub in schema.get("properties", {}).items():
        check_schema(sub, f"{where}/properties/{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        check_schema(schema["additionalProperties"], f"{where}/additionalProperties")
    if "items" in schema:
        check_schema(schema["items"], f"{where}/items")
    if "required" in schema:
        assert all(isinstance(name, str) for name in schema["required"]), where
        if "properties" in schema:
            assert set(schema["required"]) <= set(schema["properties"]), where
    if "enum" in schema:
        assert isinstance(schema["enum"], list) and schema["enum"], where
    if "pattern" in schema:
        re.compile(schema["pattern"])
    for name, needed in schema.get("dependentRequired", {}).items():
        assert name in schema["properties"] and set(needed) <= set(schema["properties"]), where


def test_routes_json_schema_lists_every_listener_key() -> None:
    schema = to_json_schema("routes", REGISTRY)

    check_schema(schema)
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == {
        "store", "store_options", "channels_dir", "listeners", "admin", "logging", "routes",
    }  # fmt: skip
    listener = schema["properties"]["listeners"]["items"]
    assert list(listener["properties"]) == listener_fields()
    assert listener["required"] == ["name"]
    assert listener["oneOf"] == [{"required": ["mllp"]}, {"required": ["directory"]}]
    assert listener["dependentRequired"]["tls"] == ["mllp"]
    assert listener["dependentRequired"]["settle_time"] == ["directory"]
    assert "after_routing: the ACK says what they made of it" in ACK_FIELD.description
    assert listener["properties"]["ack"] == {
        "enum": ["on_receipt", "after_routing"],
        "description": ACK_FIELD.description,
        "default": "on_receipt",
    }
    conflict = listener["properties"]["on_conflicting_duplicate"]
    assert conflict["enum"] == ["ack_first", "process", "reject"]
    assert conflict["default"] == "reject" and "MSH-10" in conflict["description"]
    assert listener["properties"]["tls"]["anyOf"][1] == {"type": "null"}
    assert listener["properties"]["max_frame_size"]["default"] == "16MiB"


def test_channel_json_schema_follows_the_registry() -> None:
    empty = to_json_schema("channel", Registry())
    check_schema(empty)
    assert empty["properties"]["steps"]["items"] == {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
    }

    reg = Registry()
    reg.add("step", "plugin", PLUGIN)
    reg.add("step", "set", FreeMapping())
    schema = to_json_schema("channel", reg)
    check_schema(schema)
    branches = schema["properties"]["steps"]["items"]["oneOf"]
    assert [branch["required"] for branch in branches] == [["plugin"], ["set"]]
    assert branches[0]["properties"]["plugin"]["properties"]["count"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 9,
        "description": "How many.",
        "default": 3,
    }


def test_json_schema_against_the_metaschema_and_the_example() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    routes = to_json_schema("routes", REGISTRY)
    jsonschema.Draft202012Validator.check_schema(routes)
    jsonschema.Draft202012Validator.check_schema(to_json_schema("channel", REGISTRY))
    example = yaml.safe_load((FIXTURES / "basic/routes.yaml").read_text())
    assert list(jsonschema.Draft202012Validator(routes).iter_errors(example)) == []


def test_a_duration_with_a_maximum_says_so_in_docs_and_schema():
    from engine.config.scalars import Duration

    bounded = Duration(max=0.1)
    assert bounded.doc().endswith(", at most 0.1s")
    assert bounded.json_schema()["anyOf"][0] == {"type": "number", "minimum": 0.0, "maximum": 0.1}
    assert "maximum" not in Duration().json_schema()["anyOf"][0]
