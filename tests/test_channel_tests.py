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
            expect: {ack: OK, epics: {fields: {PID3: x}}}
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


def test_unknown_destination_and_missing_input(project):
    write_tests(
        project,
        """
        tests:
          - name: x
            input: {file: missing.hl7}
            expect: {epics: {fields: {PID-3: x}}}
        """,
    )
    lines = format_report(run_tests(["channels"])).splitlines()
    assert lines[0] == (
        "channels/lab_test.yaml:4:14: 'epics' is not a destination of channel 'lab' "
        "(it has: api, epic)"
    )
    assert lines[1] == (
        "channels/lab_test.yaml:3:19: lab / x: cannot read input: No such file or directory"
    )


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
