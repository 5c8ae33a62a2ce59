"""Channels and the basic steps: filter, set, copy, move, delete, map, replace, python."""

from __future__ import annotations

import pytest

from engine.config import ConfigError
from engine.hl7.message import Message

from . import settings
from .channel_harness import ORU, pipeline, run

DEST = """
destinations:
  - {name: epic, mllp: "tcp:127.0.0.1:6661"}
"""


def out_message(result, dest="epic") -> Message:
    return result.by_destination[dest]


def test_pass_through_is_byte_identical(tmp_path):
    p, _ = pipeline(tmp_path, "name: ch\n" + DEST)
    raw = ORU.replace("\r", "\r\n").encode()
    result = p.channels["ch"].run(Message.from_bytes(raw))
    assert result.status == "passed"
    assert [o.payload for o in result.outputs] == [raw]


@pytest.mark.parametrize(
    ("cond", "passes"),
    [
        ("{field: MSH-4, in: [QUEST, LABCORP]}", True),
        ("{field: MSH-4, equals: LABCORP}", False),
        ("{field: MSH-4, not_in: [QUEST]}", False),
        ("{field: 'OBX[*]-3.1', equals: K}", True),
        ("{field: OBX-3.1, equals: K}", False),
        ("{field: PID-3.1, regex: '^1\\d+$'}", True),
        ("{field: PID-8, exists: true}", False),
        ("{field: ZZZ-1, exists: false}", True),
        ("{all: [{field: PV1-2, equals: I}, {field: MSH-4, equals: QUEST}]}", True),
        ("{any: [{field: PV1-2, equals: O}, {field: MSH-4, equals: NOPE}]}", False),
        ("{not: {field: PV1-2, equals: O}}", True),
    ],
)
def test_filter(tmp_path, cond, passes):
    result = run(tmp_path, f"name: ch\nsteps:\n  - filter: {cond}\n" + DEST)
    assert result.status == ("passed" if passes else "filtered")
    assert bool(result.outputs) == passes
    if not passes:
        assert (result.step, result.step_kind) == (1, "filter")


def test_set_copy_move_delete_map_replace(tmp_path):
    result = run(
        tmp_path,
        """
        name: ch
        steps:
          - set: {MSH-5: CERNER, PID-5.3: "Q & A"}
          - copy: {from: PID-3.1, to: PID-2}
          - move: {from: PV1-2, to: PV1-4}
          - delete: ['OBX[2]', PID-3]
          - map: {field: PV1-4, values: {I: IP, O: OP}}
          - replace: {field: PID-2, pattern: '^1', with: 'X'}
          - copy: {from: 'OBX[*]-3.1', to: 'OBX[*]-4'}
        destinations:
          - {name: epic, mllp: "tcp:127.0.0.1:6661"}
        """,
    )
    m = out_message(result)
    assert result.status == "passed"
    assert m.get("MSH-5") == "CERNER"
    assert m.segments[1] == "PID|1|X23|||DOE^JOHN^Q \\T\\ A"
    assert m.get("PV1-2") == "" and m.get("PV1-4") == "IP"
    assert m.get_all("OBX[*]-1") == ["1"]
    assert m.get("OBX-4") == "GLU"


def test_channel_never_changes_callers_message(tmp_path):
    p, _ = pipeline(tmp_path, "name: ch\nsteps:\n  - set: {MSH-5: X}\n" + DEST)
    m = Message(ORU)
    p.channels["ch"].run(m)
    assert m.get("MSH-5") == "EPIC" and not m.dirty


def test_map_on_missing(tmp_path):
    base = "name: ch\nsteps:\n  - map: {field: PV1-2, values: {O: OP}, on_missing: %s}\n" + DEST
    assert out_message(run(tmp_path, base % "keep")).get("PV1-2") == "I"
    r = run(tmp_path, base % "error")
    assert (r.status, r.step, r.step_kind) == ("errored", 1, "map")
    assert r.reason == "PV1-2: value 'I' is not in the map"
    r = run(
        tmp_path,
        (base % "default").replace("on_missing: default", "on_missing: default, default: UNK"),
    )
    assert out_message(r).get("PV1-2") == "UNK"


def test_step_error_keeps_step_number_and_kind(tmp_path):
    r = run(tmp_path, "name: ch\nsteps:\n  - set: {MSH-5: X}\n  - set: {ZZZ-1: x}\n" + DEST)
    assert (r.status, r.step, r.step_kind) == ("errored", 2, "set")
    assert "ZZZ" in r.reason and r.outputs == []


def test_python_step(tmp_path):
    mod = """
    def upper_names(message, ctx):
        message.set("PID-5.1", message.get("PID-5.1").upper() + ctx.options["suffix"])

    def drop(message, ctx):
        return False

    def boom(message, ctx):
        raise ValueError("bad unit")
    """
    chan = (
        "name: ch\nsteps:\n  - python: {function: 'xforms.m:upper_names', options: {suffix: '!'}}\n"
        + DEST
    )
    r = run(tmp_path, chan, **{"xforms/__init__.py": "", "xforms/m.py": mod})
    assert out_message(r).get("PID-5.1") == "DOE!"
    r = run(tmp_path, "name: ch\nsteps:\n  - python: xforms.m:drop\n" + DEST)
    assert r.status == "filtered"
    r = run(tmp_path, "name: ch\nsteps:\n  - python: xforms.m:boom\n" + DEST)
    assert (r.status, r.reason) == ("errored", "xforms.m:boom raised ValueError: bad unit")


def test_destination_steps_and_when(tmp_path):
    r = run(
        tmp_path,
        """
        name: ch
        destinations:
          - name: a
            mllp: "tcp:127.0.0.1:1"
            steps: [{set: {MSH-5: A}}]
          - name: b
            file: out
            when: {field: PV1-2, equals: O}
          - name: c
            rest: https://example.org/x
            format: json
            steps: [{filter: {field: MSH-4, equals: NOPE}}]
        """,
    )
    assert r.status == "passed"
    assert [o.destination for o in r.outputs] == ["a"]
    assert r.by_destination["a"].get("MSH-5") == "A"
    assert r.message.get("MSH-5") == "EPIC"


def test_rest_json_render(tmp_path):
    import json

    r = run(
        tmp_path, "name: ch\ndestinations:\n  - {name: r, rest: 'https://x.org', format: json}\n"
    )
    body = json.loads(r.outputs[0].payload)
    assert body["segments"][0][:4] == ["MSH", "|", "^~\\&", "LAB"]
    assert r.outputs[0].content_type == "application/json"


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        ("- filter: {field: PID-3}", "channels/ch.yaml:3:13: 'filter' needs exactly one test of: "
         "equals, not_equals, in, not_in, regex, exists"),
        ("- filter: {field: PID3, equals: x}", "channels/ch.yaml:3:21: 'field': 'PID3' is not a "
         "field path; write SEG[-field[.component[.subcomponent]]] with optional [n] or [*] after "
         "the segment or field, like PID-3.1, OBX[2]-5, PID-3[2].1"),
        ("- filter: {feild: PID-3, equals: x}", "channels/ch.yaml:3:14: unknown key 'feild' in "
         "'filter'; did you mean 'field'?"),
        ("- set: {PID-5.1: [a]}",
         "channels/ch.yaml:3:20: expected a value for 'PID-5.1', got list"),
        ("- copy: {from: PID-3}",
         "channels/ch.yaml:3:11: missing required key 'to' in step 1 (copy)"),
        ("- map: {field: PV1-2, values: {}, on_missing: drop}", "channels/ch.yaml:3:49: invalid "
         "value 'drop' for 'on_missing' (allowed: keep, default, error)"),
        ("- replace: {field: PID-5, pattern: '(['}", "channels/ch.yaml:3:38: invalid regular "
         "expression for 'pattern': unterminated character set at position 1"),
        ("- delete: []", "channels/ch.yaml:3:13: 'delete' must not be empty"),
        ("- python: nomodule", "channels/ch.yaml:3:13: invalid value 'nomodule' for 'function': "
         "write module.path:function"),
    ],
)  # fmt: skip
def test_bad_step_config(tmp_path, monkeypatch, steps, error):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        pipeline(tmp_path, f"name: ch\nsteps:\n  {steps}\n")
    assert error in caught.value.format().splitlines()


def test_python_function_that_cannot_be_imported_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        pipeline(tmp_path, "name: ch\nsteps:\n  - set: {MSH-5: X}\n  - python: nope.mod:fn\n")
    assert caught.value.format().splitlines()[0] == (
        "channels/ch.yaml:4:13: step 2 (python): cannot import nope.mod: "
        "ModuleNotFoundError: No module named 'nope'"
    )


def test_route_when_condition(tmp_path):
    from engine.intake import assess

    routes = """
    routes:
      - {match: {type: ORU, when: {field: 'OBX[*]-3.1', equals: K}}, to: [ch]}
    """
    p, _ = pipeline(tmp_path, "name: ch\n", routes)
    listener = settings.listener(name="x")
    assert assess(ORU.encode(), listener, p.router).channels == ["ch"]
    other = ORU.replace("K^Potassium", "NA^Sodium").encode()
    assert assess(other, listener, p.router).channels == []


def test_validate_failures_become_the_ae_err_list_in_after_routing(tmp_path):
    from engine.hl7.ack import build_ack
    from engine.intake import ack_code_to_send, apply_channels, assess

    p, _ = pipeline(tmp_path, "name: ch\nsteps:\n  - validate: {}\n" + DEST)
    listener = settings.listener(name="x", ack="after_routing")
    bad = ORU.replace("PID|1||123^^^H^MR||DOE^JOHN", "PID|1||123^^^H^MR||DOE^JOHN||notadate")
    a = assess(bad.encode(), listener, p.router)
    apply_channels(a, p, listener)
    assert a.status == "errored" and ack_code_to_send(a) == "AE"
    ack = build_ack(a.header, "AE", now=0, errors=a.errors).split("\r")
    errs = [line for line in ack if line.startswith("ERR")]
    assert (
        "ERR||PID^1^7|102^Data type error^HL70357^^^^^^PID-7 'notadate' is not a valid DTM|E"
        in errs
    )


def test_every_shared_sample_passes_a_channel_byte_identical(tmp_path):
    """Every file in ../shared/samples (batches split into their messages) comes out of a
    channel that changes nothing exactly as it went in."""
    from engine.hl7.batch import split_file

    from .conftest import samples_or_skip

    root = samples_or_skip().parent
    p, _ = pipeline(tmp_path, "name: ch\nsteps:\n  - filter: {field: MSH-9.1, exists: true}\n"
                    + DEST)  # fmt: skip
    files = sorted(root.glob("*/*.hl7"))
    assert len(files) >= 20
    checked = 0
    for path in files:
        raw = path.read_bytes()
        payloads = split_file(raw).messages if raw.startswith((b"BHS", b"FHS")) else [raw]
        for payload in payloads:
            result = p.channels["ch"].run(Message.from_bytes(payload))
            assert result.status == "passed", path.name
            assert result.outputs[0].payload == payload, path.name
            checked += 1
    assert checked >= 25


def test_rest_template_render_and_bad_template(tmp_path, monkeypatch):
    import json

    tpl = '{"mrn": "{{PID-3.1}}", "name": "{{PID-5}}", "cost": "$5", "type": "{{ MSH-9.1 }}"}'
    r = run(tmp_path, "name: ch\ndestinations:\n  - {name: r, rest: 'https://x.org', "
            f"format: template, template: '{tpl}'}}\n",
            text=ORU.replace("DOE^JOHN", 'DO"E^JOHN'))  # fmt: skip
    out = r.outputs[0]
    assert out.content_type == "application/json"
    assert json.loads(out.payload) == {"mrn": "123", "name": 'DO"E^JOHN', "cost": "$5",
                                       "type": "ORU"}  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        pipeline(tmp_path, "name: ch\ndestinations:\n  - {name: r, rest: 'https://x.org', "
                 "format: template, template: '{{PID3}}'}\n")  # fmt: skip
    assert (
        caught.value.format()
        .splitlines()[0]
        .startswith("channels/ch.yaml:3:5: destination 'r': 'PID3' is not a field path")
    )
