"""switchboard test: channel test files, their failures with locations, the exit status."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.testing import format_report, run_tests

REPO = Path(__file__).resolve().parents[1]

CHANNEL = """
name: lab
steps:
  - filter: {field: MSH-4, in: [QUEST]}
  - map: {field: PV1-2, values: {I: IP}, on_missing: error}
  - set: {MSH-5: EPIC}
destinations:
  - {name: epic, mllp: "tcp:127.0.0.1:6661"}
  - {name: api, rest: "https://api.example.org/x", format: json}
"""

MSG = "MSH|^~\\\\&|LAB|QUEST|X|H|2024||ORU^R01|C1|P|2.5\\nPID|1||123^^^H^MR\\nPV1|1|I"


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "lab.yaml").write_text(textwrap.dedent(CHANNEL))
    (tmp_path / "routes.yaml").write_text(
        f"store: sqlite:///{tmp_path / 'x.db'}\nroutes:\n  - {{match: {{}}, to: [lab]}}\n"
    )
    return tmp_path


def write_tests(project: Path, body: str) -> Path:
    path = project / "channels" / "lab_test.yaml"
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def test_passing_tests(project):
    write_tests(
        project,
        f"""
        tests:
          - name: routed to epic with a new receiver
            input: {{text: "{MSG}"}}
            expect:
              ack: AA
              epic: {{fields: {{MSH-5: EPIC, PID-3.1: "123", PV1-2: IP}}}}
              api: {{contains: {{segments: [[MSH], [PID, "1", "", "123^^^H^MR"]]}}}}
          - name: other facility filtered
            input: {{text: "{MSG.replace("QUEST", "OTHER")}"}}
            expect: {{ack: AA, filtered: true, no_output: [epic, api]}}
          - name: unmapped patient class fails the step
            input: {{text: "{MSG.replace("PV1|1|I", "PV1|1|Z")}"}}
            expect: {{ack: AE, errored: "not in the map", no_output: [epic]}}
        """,
    )
    report = run_tests(["channels"])
    assert format_report(report) == "3 passed, 0 failed"
    assert report.ok


def test_failures_name_file_line_expected_and_actual(project):
    write_tests(
        project,
        f"""
        tests:
          - name: wrong expectations
            input: {{text: "{MSG}"}}
            expect:
              ack: AR
              epic:
                fields: {{MSH-5: CERNER, PV1-2: IP}}
              api: {{contains: {{segments: [[PID, "2"]]}}}}
          - name: filtered but expected output
            input: {{text: "{MSG.replace("QUEST", "OTHER")}"}}
            expect: {{epic: {{fields: {{MSH-5: EPIC}}}}}}
        """,
    )
    report = run_tests(["channels"])
    assert not report.ok
    assert format_report(report).splitlines() == [
        "channels/lab_test.yaml:5:12: lab / wrong expectations: ack: expected AR, got AA",
        "channels/lab_test.yaml:7:18: lab / wrong expectations: epic MSH-5: expected 'CERNER', "
        "got 'EPIC'",
        "channels/lab_test.yaml:8:23: lab / wrong expectations: api: segments[0]: no item "
        'matches ["PID", "2"]',
        "channels/lab_test.yaml:11:14: lab / filtered but expected output: epic: expected "
        "output, got none (filtered at step 1 (filter))",
        "0 passed, 2 failed",
    ]


def test_bad_test_file_reported_with_locations(project):
    write_tests(
        project,
        """
        tests:
          - name: x
            input: {text: "MSH|^~\\\\&|A"}
            expect: {ack: OK, epic: {fields: {PID3: x}}}
          - name: y
            input: {file: missing.hl7}
            expect: {ack: AA}
        """,
    )
    report = run_tests(["channels"])
    lines = format_report(report).splitlines()
    assert "channels/lab_test.yaml:4:19: invalid value 'OK' for 'ack' (allowed: AA, AE, AR, CA, " \
        "CE, CR, none)" in lines  # fmt: skip
    assert any("'PID3' is not a field path" in line for line in lines)
    assert lines[-1] == "0 passed, 0 failed, 2 errors in 1 file"  # no test of the file ran


def test_unknown_expect_keys_get_did_you_mean_or_the_valid_keys(project):
    write_tests(
        project,
        """
        tests:
          - name: x
            input: {text: "MSH|^~\\\\&|A"}
            expect:
              filterd: true
              epics: {fields: {PID-3: x}}
              zzz: 1
              no_output: [epci, nowhere]
        """,
    )
    report = run_tests(["channels"])
    assert not report.ok
    assert format_report(report).splitlines() == [
        "channels/lab_test.yaml:5:7: unknown key 'filterd' in expect of test 'x'; did you mean "
        "'filtered'?",
        "channels/lab_test.yaml:6:7: unknown key 'epics' in expect of test 'x'; did you mean "
        "'epic'?",
        "channels/lab_test.yaml:7:7: unknown key 'zzz' in expect of test 'x'; valid keys: ack, "
        "filtered, errored, flags, no_output, routed, and the destinations of channel 'lab': "
        "api, epic",
        "channels/lab_test.yaml:8:19: 'epci' in no_output is not a destination of channel 'lab'; "
        "did you mean 'epic'?",
        "channels/lab_test.yaml:8:25: 'nowhere' in no_output is not a destination of channel "
        "'lab' (it has: api, epic)",
        "0 passed, 0 failed, 5 errors in 1 file",
    ]


def test_an_input_file_that_cannot_be_read_fails_its_test(project):
    write_tests(
        project,
        """
        tests:
          - name: x
            input: {file: missing.hl7}
            expect: {epic: {fields: {PID-3: x}}}
        """,
    )
    assert format_report(run_tests(["channels"])).splitlines() == [
        "channels/lab_test.yaml:3:19: lab / x: cannot read input: No such file or directory",
        "0 passed, 1 failed",
    ]


def test_no_test_files_fails(project):
    report = run_tests(["channels"])
    assert not report.ok and "no *_test.yaml files found" in format_report(report)


def test_cli_exit_status(project):
    write_tests(
        project, f'tests:\n  - name: a\n    input: {{text: "{MSG}"}}\n    expect: {{ack: AR}}\n'
    )
    out = subprocess.run([sys.executable, "-m", "engine", "test"], cwd=project,
                         capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines()[-1] == "0 passed, 1 failed"


def test_a_yaml_error_in_one_file_is_located_and_the_other_files_still_run(project):
    write_tests(
        project, f'tests:\n  - name: a\n    input: {{text: "{MSG}"}}\n    expect: {{ack: AA}}\n'
    )
    (project / "channels" / "other_test.yaml").write_text(
        "channel: lab\ntests:\n  - name: b\n    input: {file: x.hl7}\n"
        "    expect: {epic: {fields: {OBX[1]-3.1: x}}}\n"  # unquoted [ in flow style
    )
    (project / "channels" / "third_test.yaml").write_text(
        f'channel: lab\ntests:\n  - name: c\n    input: {{text: "{MSG}"}}\n'
        "    expect: {ack: AR}\n"
    )
    out = subprocess.run([sys.executable, "-m", "engine", "test"], cwd=project,
                         capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines() == [
        "channels/other_test.yaml:5:33: YAML syntax error: expected ',' or '}', but got '[' "
        "(while parsing a flow mapping at line 5)",
        "channels/third_test.yaml:5:19: lab / c: ack: expected AR, got AA",
        "1 passed, 1 failed, 1 error in 1 file",
    ]


def _schema_gaps(schema: dict, where: str) -> list[str]:
    """Places under `schema` that accept anything (no type, enum or typed alternatives).
    Alternatives under a typed schema only add constraints (`oneOf: [{required: [file]}...]`)."""
    gaps = [] if {"type", "enum", "anyOf", "oneOf"} & set(schema) else [where]
    if "type" not in schema:
        for key in ("anyOf", "oneOf"):
            for index, sub in enumerate(schema.get(key, [])):
                gaps += _schema_gaps(sub, f"{where}/{key}/{index}")
    for name, sub in schema.get("properties", {}).items():
        gaps += _schema_gaps(sub, f"{where}/{name}")
    for key in ("additionalProperties", "items", "propertyNames"):
        if isinstance(schema.get(key), dict):
            gaps += _schema_gaps(schema[key], f"{where}/{key}")
    return gaps


def test_the_channel_test_schema_types_input_and_expect_as_the_runner_does():
    import jsonschema
    import yaml

    from engine.testing_spec import EXPECT, INPUT, OUTPUT, channel_test_schema

    schema = channel_test_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    test = schema["properties"]["tests"]["items"]
    expect, given = test["properties"]["expect"], test["properties"]["input"]
    assert list(expect["properties"]) == EXPECT.keys
    assert list(expect["additionalProperties"]["properties"]) == OUTPUT.keys  # a destination
    assert list(given["properties"]) == INPUT.keys
    assert _schema_gaps(expect, "expect") == [] and _schema_gaps(given, "input") == []
    for part in (expect, expect["additionalProperties"], given):
        for name, sub in part["properties"].items():
            assert sub.get("description"), name

    validator = jsonschema.Draft202012Validator(schema)
    for path in (REPO / "channels").glob("*_test.yaml"):
        assert list(validator.iter_errors(yaml.safe_load(path.read_text()))) == [], path

    def errors(expect: dict, given: dict | None = None) -> list:
        doc = {"tests": [{"name": "t", "input": given or {"text": "MSH|"}, "expect": expect}]}
        return list(validator.iter_errors(doc))

    assert errors({"ack": "AA", "errored": True, "flags": "x", "epic": {"text": "y"}}) == []
    assert errors({"errored": "timeout", "no_output": ["a"], "epic": {"contains": [1]}}) == []
    for bad in ({"ack": "OK"}, {"errored": 3}, {"filtered": "maybe"}, {"epic": {"fieldz": {}}},
                {"epic": {"contains": "text"}}, {"epic": {"fields": {"PID-3": [1]}}},
                {"epic": {"fields": {"pid3": "x"}}}):  # fmt: skip
        assert errors(bad), bad
    assert errors({}, {"file": "a.hl7", "text": "MSH|"}) and errors({}, {"fil": "a.hl7"})
