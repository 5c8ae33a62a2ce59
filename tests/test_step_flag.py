"""flag: abnormal results by limits per test and by OBX-8; alert (flagged_only) destinations."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from engine.channel import PASSED
from engine.components import load
from engine.config import ConfigError
from engine.context import Context
from engine.hl7.message import Message
from engine.metrics import Metrics
from engine.steps.base import RunContext
from engine.steps.flag import numeric

REPO = Path(__file__).resolve().parents[1]

HEAD = (
    "MSH|^~\\&|LAB|HOSP|EPIC|HOSP|20240101||ORU^R01|C1|P|2.5\r"
    "PID|1||123^^^H^MR||DOE^JANE\r"
    "OBR|1|||GLU^Glucose^L\r"
)
GLUCOSE_HIGH = HEAD + "OBX|1|NM|GLU^Glucose^L||182|mg/dL|70-105|H\r"


def obx(*rows: str) -> str:
    return HEAD + "".join(f"OBX|{i}|{row}\r" for i, row in enumerate(rows, 1))


def write(tmp_path: Path, steps: str, destinations: str = "- {name: out, file: out}") -> Path:
    (tmp_path / "channels").mkdir(exist_ok=True)
    tdir = tmp_path / "transforms" / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "transforms" / "tables" / "lab-to-loinc.csv", tdir)
    (tmp_path / "routes.yaml").write_text("routes:\n  - {to: [lab]}\n")
    body = (
        "name: lab\nsteps:\n"
        + textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
        + "\ndestinations:\n"
        + textwrap.indent(textwrap.dedent(destinations).strip("\n"), "  ")
        + "\n"
    )
    (tmp_path / "channels" / "lab.yaml").write_text(body)
    return tmp_path / "routes.yaml"


def build(tmp_path, steps, destinations="- {name: out, file: out}"):
    runtime = Context(metrics=Metrics())
    return load(write(tmp_path, steps, destinations), runtime)[1].channels["lab"], runtime


def flagged(runtime, flag, channel="lab"):
    return runtime.metrics.registry.get_sample_value(
        "switchboard_flagged_messages_total", {"channel": channel, "flag": flag}
    )


def run(channel, text):
    return channel.run(Message(text))


GLUCOSE_RULE = "- flag: {rules: [{code: GLU, above: 105, below: 70}]}"


# config ----------------------------------------------------------------------------------
def test_defaults(tmp_path):
    channel, _ = build(tmp_path, GLUCOSE_RULE)
    assert channel.steps[0].config.as_dict() == {
        "rules": [{"code": "GLU", "system": None, "above": 105.0, "below": 70.0, "flag": None}],
        "abnormal_flags": [],
        "flag": "abnormal",
        "set_abnormal_flag": False,
    }


def test_config_errors(tmp_path, monkeypatch):
    steps = """
    - flag: {}
    - flag:
        rules:
          - {code: GLU}
          - {code: K, above: 3.5, below: 5.1}
          - {code: NA, above: high, flag: "bad flag"}
        abnormal_flags: H
    """
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        build(tmp_path, steps)
    assert [p.format() for p in info.value.problems] == [
        "channels/lab.yaml:3:11: step 1 (flag) needs 'rules' or 'abnormal_flags'",
        "channels/lab.yaml:6:11: rule 1 needs 'above' or 'below' (or both)",
        "channels/lab.yaml:7:11: rule 2 flags every value: 'below' (5.1) is over 'above' (3.5); "
        "a value is flagged when it is above 'above' or below 'below'",
        "channels/lab.yaml:8:29: expected number for 'above', got string 'high'",
        "channels/lab.yaml:8:41: invalid value 'bad flag' for 'flag': use only letters, "
        "digits, '_', '.' and '-'",
        "channels/lab.yaml:9:23: expected list of string for 'abnormal_flags', got string 'H'",
    ]


# thresholds ------------------------------------------------------------------------------
def test_above_threshold_flags_the_message(tmp_path):
    channel, runtime = build(tmp_path, GLUCOSE_RULE)
    result = run(channel, GLUCOSE_HIGH)
    assert result.status == PASSED
    assert result.flags == ["abnormal"]
    assert flagged(runtime, "abnormal") == 1
    assert result.message.get("OBX-8") == "H"  # untouched


@pytest.mark.parametrize(
    ("value", "expected"),
    [("182", ["abnormal"]), ("105", []), ("104.9", []), ("69.5", ["abnormal"]), ("70", []),
     ("-1", ["abnormal"]), (" 90 ", [])],
)  # fmt: skip
def test_limits_are_strict(tmp_path, value, expected):
    channel, _ = build(tmp_path, GLUCOSE_RULE)
    assert run(channel, obx(f"NM|GLU^Glucose^L||{value}|mg/dL")).flags == expected


def test_non_numeric_values_are_skipped(tmp_path):
    channel, runtime = build(tmp_path, GLUCOSE_RULE)
    for value in ("see note", "", "1,5", "182 mg/dL", "^10^-^200"):
        result = run(channel, obx(f"ST|GLU^Glucose^L||{value}|mg/dL"))
        assert result.flags == [], value
    assert flagged(runtime, "abnormal") is None


@pytest.mark.parametrize(
    ("sn", "expected"),
    [(">^200", ["abnormal"]), (">^105", ["abnormal"]), (">=^105", []), ("<^70", ["abnormal"]),
     ("<^90", []), ("^182", ["abnormal"]), ("=^100", []), ("^100^-^300", []), ("^1^:^400", [])],
)  # fmt: skip
def test_structured_numeric(tmp_path, sn, expected):
    channel, _ = build(tmp_path, GLUCOSE_RULE)
    assert run(channel, obx(f"SN|GLU^Glucose^L||{sn}|mg/dL")).flags == expected


def test_numeric_reader():
    def value(row):
        return numeric(Message(obx(row)), "OBX[1]")

    assert value("NM|X||182") == ("", 182.0)
    assert value("NM|X||>250") == (">", 250.0)
    assert value("SN|X||<=^.5") == ("<=", 0.5)
    assert value("NM|X||high") is None
    assert value("NM|X||") is None


def test_several_rules_and_flags_in_order(tmp_path):
    steps = """
    - flag:
        rules:
          - {code: K, system: L, above: 5.1, below: 3.5}
          - {code: K, above: 6.5, below: 2.5, flag: critical}
          - {code: GLU, system: LN, above: 105}
    """
    channel, runtime = build(tmp_path, steps)
    text = obx("NM|GLU^Glucose^L||300", "NM|K^Potassium^L||7.2", "NM|K^Potassium^L||6.0")
    result = run(channel, text)
    assert result.flags == ["abnormal", "critical"]  # GLU rule wants system LN
    assert flagged(runtime, "abnormal") == 1  # once per message, though two OBX raised it
    assert flagged(runtime, "critical") == 1
    run(channel, text)
    assert flagged(runtime, "abnormal") == 2


def test_flags_add_to_existing_ones_without_repeats(tmp_path):
    channel, runtime = build(tmp_path, GLUCOSE_RULE)
    ctx = RunContext(channel="lab", flags=["abnormal", "vip"])
    result = channel.run(Message(GLUCOSE_HIGH), ctx=ctx)
    assert result.flags == ["abnormal", "vip"]
    assert flagged(runtime, "abnormal") is None  # raised earlier, not by this step


def test_result_status_deleted_or_wrong_is_not_flagged(tmp_path):
    channel, _ = build(tmp_path, GLUCOSE_RULE + "\n- flag: {abnormal_flags: [H]}")
    for status in ("D", "W", "X"):
        text = obx(f"NM|GLU^Glucose^L||182|mg/dL|70-105|H|||{status}")
        assert run(channel, text).flags == [], status
    assert run(channel, obx("NM|GLU^Glucose^L||182|mg/dL|70-105|H|||C")).flags == ["abnormal"]


def test_rule_matches_the_alternate_code_after_translate(tmp_path):
    steps = """
    - translate: {field: "OBX[*]-3", table: lab-to-loinc, keep_original: true}
    - flag:
        rules:
          - {code: GLU, system: L, above: 105, flag: local}
          - {code: 2345-7, system: LN, above: 150, flag: loinc}
    """
    channel, _ = build(tmp_path, steps)
    result = run(channel, GLUCOSE_HIGH)
    assert result.message.get("OBX-3.1") == "2345-7"
    assert result.flags == ["local", "loinc"]


def test_set_abnormal_flag_writes_h_or_l_when_empty(tmp_path):
    steps = """
    - flag:
        rules: [{code: GLU, above: 105, below: 70}]
        set_abnormal_flag: true
    """
    channel, _ = build(tmp_path, steps)
    text = obx(
        "NM|GLU^Glucose^L||182|mg/dL|70-105",
        "NM|GLU^Glucose^L||50|mg/dL|70-105|",
        "NM|GLU^Glucose^L||90|mg/dL|70-105",
        "NM|GLU^Glucose^L||300|mg/dL|70-105|HH",
    )
    msg = run(channel, text).message
    assert [msg.get(f"OBX[{i}]-8") for i in (1, 2, 3, 4)] == ["H", "L", None, "HH"]
    assert msg.segments[3] == "OBX|1|NM|GLU^Glucose^L||182|mg/dL|70-105|H"


# abnormal flags --------------------------------------------------------------------------
def test_abnormal_flags_in_obx8(tmp_path):
    steps = "- flag: {abnormal_flags: [HH, LL, AA, C], flag: critical}"
    channel, runtime = build(tmp_path, steps)
    assert run(channel, GLUCOSE_HIGH).flags == []  # H is not in the list
    assert run(channel, GLUCOSE_HIGH.replace("|H\r", "|HH\r")).flags == ["critical"]
    assert run(channel, obx("ST|CULT^Culture^L||E. coli|||N~AA")).flags == ["critical"]
    assert run(channel, obx("NM|K^Potassium^L||4.0|||N")).flags == []
    assert flagged(runtime, "critical") == 2


# alert destinations ----------------------------------------------------------------------
def test_flagged_only_destination_receives_flagged_messages_only(tmp_path):
    destinations = """
    - {name: epic, file: out/epic}
    - {name: alerts, file: out/alerts, flagged_only: true}
    """
    steps = GLUCOSE_RULE + "\n- flag: {abnormal_flags: [HH, LL]}"
    channel, runtime = build(tmp_path, steps, destinations)
    normal = run(channel, obx("NM|GLU^Glucose^L||90|mg/dL|70-105|N"))
    high = run(channel, GLUCOSE_HIGH)
    critical = run(channel, obx("NM|K^Potassium^L||7.1|mmol/L|3.5-5.1|HH"))
    text_only = run(channel, obx("ST|GLU^Glucose^L||pending|||N"))
    assert [o.destination for o in normal.outputs] == ["epic"]
    assert [o.destination for o in high.outputs] == ["epic", "alerts"]
    assert [o.destination for o in critical.outputs] == ["epic", "alerts"]
    assert [o.destination for o in text_only.outputs] == ["epic"]
    assert high.outputs[1].payload == GLUCOSE_HIGH.encode()
    assert flagged(runtime, "abnormal") == 2


def test_flag_step_without_metrics(tmp_path):
    channel = load(write(tmp_path, GLUCOSE_RULE), Context())[1].channels["lab"]
    assert run(channel, GLUCOSE_HIGH).flags == ["abnormal"]
