"""translate: code tables (CSV, FHIR ConceptMap), config errors with their location, runs."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from engine.channel import ERRORED, PASSED
from engine.components import load
from engine.config import ConfigError
from engine.context import Context
from engine.hl7.message import Message
from engine.metrics import Metrics
from engine.steps.tables import TableCache, TableError, Target, parse_conceptmap, parse_csv

REPO = Path(__file__).resolve().parents[1]
TABLES = REPO / "transforms" / "tables"

MSG = (
    "MSH|^~\\&|LAB|HOSP|EPIC|HOSP|20240101||ORU^R01|C1|P|2.5\r"
    "PID|1||123^^^H^MR||DOE^JANE\r"
    "OBR|1|||GLU^Glucose^L\r"
    "OBX|1|NM|GLU^Glucose^L||182|mg/dL|70-105|H\r"
    "OBX|2|NM|K^Potassium^L||4.1|mmol/L|3.5-5.1|N\r"
    "OBX|3|NM|ZZZ^Mystery^L||1|u||N\r"
)


def write(tmp_path: Path, steps: str, tables: dict[str, str] | None = None) -> Path:
    """routes.yaml, channels/lab.yaml with `steps` (YAML, indented under `steps:`), and the
    example tables plus `tables` in transforms/tables/."""
    (tmp_path / "channels").mkdir(exist_ok=True)
    tdir = tmp_path / "transforms" / "tables"
    tdir.mkdir(parents=True, exist_ok=True)
    for name in ("lab-to-loinc.csv", "lab-to-loinc.conceptmap.json"):
        shutil.copy(TABLES / name, tdir / name)
    for name, text in (tables or {}).items():
        (tdir / name).write_text(textwrap.dedent(text))
    (tmp_path / "routes.yaml").write_text("routes:\n  - {to: [lab]}\n")
    body = "name: lab\nsteps:\n" + textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    (tmp_path / "channels" / "lab.yaml").write_text(body + "\ndestinations:\n  - {name: out, "
                                                    "file: out}\n")  # fmt: skip
    return tmp_path / "routes.yaml"


def build(tmp_path, steps, tables=None, metrics=None):
    runtime = Context(metrics=metrics or Metrics())
    return load(write(tmp_path, steps, tables), runtime)[1].channels["lab"], runtime


def errors(tmp_path, monkeypatch, steps, tables=None) -> list[str]:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        build(tmp_path, steps, tables)
    return [p.format() for p in info.value.problems]


def run(channel, text=MSG):
    return channel.run(Message(text))


def unmapped(runtime, table="lab-to-loinc") -> float:
    return runtime.metrics.registry.get_sample_value(
        "switchboard_unmapped_codes_total", {"table": table}
    )


# config errors ---------------------------------------------------------------------------
def test_missing_table_is_reported_at_its_option(tmp_path, monkeypatch):
    steps = """
    - translate:
        field: OBX[*]-3
        table: lab-to-loinx
    """
    assert errors(tmp_path, monkeypatch, steps) == [
        "channels/lab.yaml:5:14: step 1 (translate): table 'lab-to-loinx' not found: tried "
        "transforms/tables/lab-to-loinx.csv and transforms/tables/lab-to-loinx.json"
    ]


def test_every_step_using_a_broken_table_is_reported(tmp_path, monkeypatch):
    steps = """
    - translate: {field: "OBX[*]-3", table: nope}
    - translate: {field: "OBR-4", table: nope}
    """
    found = errors(tmp_path, monkeypatch, steps)
    assert [line.split(": step")[0] for line in found] == [
        "channels/lab.yaml:3:43",
        "channels/lab.yaml:4:40",
    ]


def test_bad_csv_row_names_file_and_line(tmp_path, monkeypatch):
    table = """\
    # comment lines and blank lines count for line numbers
    source_code,target_code,target_display,target_system

    GLU,2345-7,Glucose [Mass/volume] in Serum or Plasma,LN
    K,2823-3,Potassium, in Serum,LN
    """
    steps = """
    - translate:
        field: OBX[*]-3
        table: bad
    """
    assert errors(tmp_path, monkeypatch, steps, {"bad.csv": table}) == [
        "channels/lab.yaml:5:14: step 1 (translate): transforms/tables/bad.csv:5: 5 values, "
        "the header has 4 columns (quote values that contain commas)"
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "source_code,target_code\nGLU,2345-7\nK,2823-3\nGLU,1554-5\n",
            "transforms/tables/bad.csv:4: source code 'GLU' is already mapped on line 2",
        ),
        (
            "code,loinc\nGLU,2345-7\n",
            "transforms/tables/bad.csv:1: the header must name source_code,target_code,"
            "target_display,target_system (missing source_code, target_code; got code,loinc)",
        ),
        (
            "source_code,target_code\nGLU,\n",
            "transforms/tables/bad.csv:2: empty target_code for source code 'GLU'",
        ),
        (
            "# only a comment\n",
            "transforms/tables/bad.csv: no header row "
            "(source_code,target_code,target_display,target_system)",
        ),
        ("source_code,target_code\n", "transforms/tables/bad.csv: the table has no mappings"),
    ],
)
def test_malformed_csv(tmp_path, monkeypatch, table, message):
    found = errors(tmp_path, monkeypatch, "- translate: {field: OBX-3, table: bad}",
                   {"bad.csv": table})  # fmt: skip
    assert found == [f"channels/lab.yaml:3:38: step 1 (translate): {message}"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            '{"resourceType": "ConceptMap",\n "group": [}',
            "transforms/tables/bad.json:2: invalid JSON: Expecting value",
        ),
        (
            '{"resourceType": "ValueSet"}',
            'transforms/tables/bad.json: resourceType is "ValueSet", expected "ConceptMap"',
        ),
        (
            json.dumps({"resourceType": "ConceptMap", "group": [{"target": "http://loinc.org",
                        "element": [{"code": "GLU", "target": [{"display": "Glucose",
                                                                "equivalence": "equal"}]}]}]}),
            "transforms/tables/bad.json: group[0].element[0].target[0] has no code",
        ),
        (
            json.dumps({"resourceType": "ConceptMap", "group": [
                {"element": [{"code": "GLU", "target": [{"code": "2345-7"}]}]},
                {"element": [{"code": "GLU", "target": [{"code": "1554-5"}]}]}]}),
            "transforms/tables/bad.json: group[1].element[0]: source code 'GLU' is already "
            "mapped at group[0].element[0]",
        ),
    ],
)  # fmt: skip
def test_bad_conceptmap(tmp_path, monkeypatch, doc, message):
    steps = """
    - translate:
        field: OBX[*]-3
        table: bad
    """
    found = errors(tmp_path, monkeypatch, steps, {"bad.json": doc})
    assert found == [f"channels/lab.yaml:5:14: step 1 (translate): {message}"]


def test_table_named_twice_is_ambiguous(tmp_path, monkeypatch):
    tables = {"t.csv": "source_code,target_code\nA,B\n", "t.json": '{"resourceType": "x"}'}
    found = errors(tmp_path, monkeypatch, "- translate: {field: OBX-3, table: t}", tables)
    assert found == [
        "channels/lab.yaml:3:38: step 1 (translate): table 't' is ambiguous: both "
        "transforms/tables/t.csv and transforms/tables/t.json exist; write 't.csv' or 't.json'"
    ]


def test_spec_errors(tmp_path, monkeypatch):
    steps = """
    - translate: {field: OBX-3.1, table: lab-to-loinc}
    - translate: {field: OBX-3, table: lab-to-loinc, on_missing: default}
    - translate: {field: OBX-3, table: lab-to-loinc, default: UNK}
    - translate: {field: OBX-3, tabel: lab-to-loinc, on_missing: drop}
    """
    assert errors(tmp_path, monkeypatch, steps) == [
        "channels/lab.yaml:3:24: 'field' names the coded field itself (like OBX[*]-3), not a "
        "component: OBX-3.1",
        "channels/lab.yaml:4:64: on_missing 'default' needs 'default' in step 2 (translate)",
        "channels/lab.yaml:5:52: key 'default' only applies with on_missing: default "
        "(here: keep) in step 3 (translate)",
        "channels/lab.yaml:6:31: unknown key 'tabel' in step 4 (translate); did you mean 'table'?",
        "channels/lab.yaml:6:64: invalid value 'drop' for 'on_missing' (allowed: keep, error, "
        "default)",
    ]


def test_defaults(tmp_path):
    channel, _ = build(tmp_path, "- translate: {field: OBX-3, table: lab-to-loinc}")
    step = channel.steps[0]
    assert step.config.as_dict() == {
        "field": "OBX-3",
        "table": "lab-to-loinc",
        "keep_original": False,
        "on_missing": "keep",
        "default": None,
        "source_system": None,
    }


# runs -----------------------------------------------------------------------------------
def test_translates_every_obx_with_csv(tmp_path):
    channel, runtime = build(tmp_path, '- translate: {field: "OBX[*]-3", table: lab-to-loinc}')
    result = run(channel)
    assert result.status == PASSED
    assert result.message.get_all("OBX[*]-3") == [
        "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN",
        "2823-3^Potassium [Moles/volume] in Serum or Plasma^LN",
        "ZZZ^Mystery^L",  # unmapped, kept
    ]
    assert result.message.get("OBR-4") == "GLU^Glucose^L"  # only the named field
    assert unmapped(runtime) == 1
    assert result.outputs[0].payload.startswith(b"MSH|^~\\&|LAB|")


def test_keep_original_moves_code_to_alternate(tmp_path):
    channel, _ = build(tmp_path, """
    - translate: {field: "OBX[*]-3", table: lab-to-loinc, keep_original: true}
    """)  # fmt: skip
    msg = run(channel).message
    assert msg.get_raw("OBX[1]-3") == (
        "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN^GLU^Glucose^L"
    )
    assert msg.get("OBX[1]-3.4") == "GLU"
    assert msg.get("OBX[3]-3") == "ZZZ^Mystery^L"


def test_conceptmap_table(tmp_path):
    channel, runtime = build(tmp_path, """
    - translate: {field: "OBX[*]-3", table: lab-to-loinc.conceptmap, keep_original: true}
    """)  # fmt: skip
    msg = run(channel).message
    assert msg.get_all("OBX[*]-3") == [
        "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN^GLU^Glucose^L",
        "2823-3^Potassium [Moles/volume] in Serum or Plasma^LN^K^Potassium^L",
        "ZZZ^Mystery^L",
    ]
    assert unmapped(runtime, "lab-to-loinc.conceptmap") == 1


def test_csv_and_conceptmap_examples_agree():
    csv_entries = parse_csv((TABLES / "lab-to-loinc.csv").read_text(), "csv")
    cm_entries = parse_conceptmap((TABLES / "lab-to-loinc.conceptmap.json").read_text(), "cm")
    assert csv_entries == cm_entries
    assert csv_entries[("GLU", "")] == Target(
        "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "LN"
    )
    assert csv_entries[("CO2", "")].display.startswith("Carbon dioxide, total")
    assert len(csv_entries) >= 10


def test_on_missing_error(tmp_path):
    channel, runtime = build(tmp_path, """
    - set: {MSH-5: EPIC}
    - translate: {field: "OBX[*]-3", table: lab-to-loinc, on_missing: error}
    """)  # fmt: skip
    result = run(channel)
    assert result.status == ERRORED
    assert (result.step, result.step_kind) == (2, "translate")
    assert result.reason == "code 'ZZZ' (system L) at OBX[3]-3 is not in table 'lab-to-loinc'"
    assert "DOE" not in result.reason and "123" not in result.reason
    assert result.outputs == []
    assert unmapped(runtime) == 1


def test_on_missing_default(tmp_path):
    channel, runtime = build(tmp_path, """
    - translate:
        field: OBX[*]-3
        table: lab-to-loinc
        on_missing: default
        default: UNK^Unknown^NULLFL
    - translate: {field: OBR-4, table: lab-to-loinc, on_missing: default, default: X}
    """)  # fmt: skip
    msg = run(channel, MSG.replace("OBR|1|||GLU^Glucose^L", "OBR|1|||CBC^Blood count^L")).message
    assert msg.get("OBX[3]-3") == "UNK^Unknown^NULLFL"
    assert msg.get("OBX[1]-3.1") == "2345-7"
    assert msg.get("OBR-4") == "X^Blood count^"  # no text given: the original text stays
    assert unmapped(runtime) == 2


def test_unmapped_counter_without_metrics(tmp_path):
    path = write(tmp_path, '- translate: {field: "OBX[*]-3", table: lab-to-loinc}')
    channel = load(path, Context())[1].channels["lab"]
    assert run(channel).status == PASSED


def test_source_system_limits_translation(tmp_path):
    channel, runtime = build(tmp_path, """
    - translate: {field: "OBX[*]-3", table: lab-to-loinc, source_system: L}
    """)  # fmt: skip
    text = MSG.replace("K^Potassium^L", "K^Potassium^99LOC").replace("ZZZ^Mystery^L", "NA")
    msg = run(channel, text).message
    assert msg.get_all("OBX[*]-3") == [
        "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN",
        "K^Potassium^99LOC",
        "NA",
    ]
    assert unmapped(runtime) is None  # codes of other systems are not counted


def test_csv_source_system_column_and_escaping(tmp_path):
    table = """\
    source_code,target_code,target_display,target_system,source_system,comment
    K,2823-3,Potassium,http://loinc.org,L,extra columns are ignored
    K,KX,Potassium & more,LOCAL,,
    """
    channel, _ = build(tmp_path, '- translate: {field: "OBX[*]-3", table: t}', {"t.csv": table})
    msg = run(channel, MSG.replace("ZZZ^Mystery^L", "K^Pot^99X")).message
    assert msg.get_raw("OBX[2]-3") == "2823-3^Potassium^LN"  # URI -> HL7 name
    assert msg.get_raw("OBX[3]-3") == "KX^Potassium \\T\\ more^LOCAL"
    assert msg.get("OBX[3]-3.2") == "Potassium & more"


def test_repetitions_and_short_codes(tmp_path):
    channel, _ = build(tmp_path, """
    - translate: {field: "OBX[*]-3[*]", table: lab-to-loinc, keep_original: true}
    """)  # fmt: skip
    text = MSG.replace("GLU^Glucose^L|", "GLU~NA^Sodium^L^^^^v1|")
    msg = run(channel, text).message
    assert msg.segments[3].split("|")[3] == (
        "2345-7^Glucose [Mass/volume] in Serum or Plasma^LN^GLU"
        "~2951-2^Sodium [Moles/volume] in Serum or Plasma^LN^NA^Sodium^L^v1"
    )


def test_unchanged_message_keeps_original_bytes(tmp_path):
    channel, _ = build(tmp_path, '- translate: {field: "OBX[*]-3", table: lab-to-loinc}')
    payload = MSG.replace("GLU^", "X1^").replace("K^", "X2^").encode()
    result = channel.run(Message.from_bytes(payload))
    assert result.outputs[0].payload == payload


def test_table_loaded_once_per_build(tmp_path):
    channel, _ = build(tmp_path, """
    - translate: {field: "OBX[*]-3", table: lab-to-loinc}
    - translate: {field: OBR-4, table: lab-to-loinc}
    """)  # fmt: skip
    assert channel.steps[0].table is channel.steps[1].table  # one TableCache per build
    assert channel.steps[0].table.lookup("HGB") == Target(
        "718-7", "Hemoglobin [Mass/volume] in Blood", "LN"
    )


# tables -----------------------------------------------------------------------------------
def test_lookup_prefers_the_system_specific_row():
    entries = parse_csv("source_code,target_code,source_system\nK,A,\nK,B,L\n", "t.csv")
    from engine.steps.tables import CodeTable

    table = CodeTable("t", Path("t.csv"), entries)
    assert table.lookup("K", "L").code == "B"
    assert table.lookup("K", "99X").code == "A"
    assert table.lookup("K").code == "A"
    assert table.lookup("k") is None
    with pytest.raises(TypeError):
        table._entries[("Z", "")] = Target("Z")  # immutable


def test_conceptmap_r5_and_unusable_targets():
    doc = {
        "resourceType": "ConceptMap",
        "group": [
            {
                "target": "http://snomed.info/sct|http://snomed.info/sct/731000124108",
                "element": [
                    {"code": "A", "target": [{"code": "1", "relationship": "not-related-to"},
                                             {"code": "2", "relationship": "equivalent"}]},
                    {"code": "B", "noMap": True},
                    {"code": "C", "target": [{"equivalence": "unmatched"}]},
                    {"code": "D", "target": [{"code": "4", "equivalence": "disjoint"},
                                             {"code": "5", "equivalence": "wider"}]},
                ],
            },
            {"target": "urn:oid:1.2.3", "element": [{"code": "E", "target": [{"code": "6"}]}]},
        ],
    }  # fmt: skip
    entries = parse_conceptmap(json.dumps(doc), "cm.json")
    assert entries == {
        ("A", ""): Target("2", "", "SCT"),
        ("D", ""): Target("5", "", "SCT"),
        ("E", ""): Target("6", "", "urn:oid:1.2.3"),
    }


def test_cache_repeats_the_error(tmp_path):
    cache = TableCache(tmp_path)
    for _ in range(2):
        with pytest.raises(TableError, match="table 'x' not found"):
            cache.get("x")
