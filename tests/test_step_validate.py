"""The validate step: config through the real loader, one ERR per failure with its location
(protocol.md cases 42, 43), versions, toggles, and the shared samples."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import engine.steps.validate as validate
from engine.channel import ERRORED, PASSED
from engine.components import load
from engine.config import ConfigError
from engine.context import Context
from engine.hl7.ack import AckError, build_ack
from engine.hl7.header import read_header
from engine.hl7.message import Message
from engine.steps import RunContext, StepError
from tests.conftest import SAMPLES

MSH = "MSH|^~\\&|REG|HOSP|EHR|HOSP|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5"
GOOD = f"{MSH}\rEVN|A01|20240101120000\rPID|1||123^^^HOSP^MR||DOE^JOHN||19800101|F\rPV1|1|I\r"
BROKEN = (
    f"{MSH}\r"
    "EVN|A01|\r"
    "PID|1||123^^^HOSP^MR~456^^^HOSP^MR^^2024x||DOE^JOHN||notadate|F||||||||||||||||X\r"
    "ZPV|anything\r"
    "OBX|1|NM|GLU^Glucose||foo|mg/dl|||||F\r"
    "OBX|2|NM|GLU^Glucose||5.5|mg/dl|||||F\r"
    "OBX|3|DT|DOB||20240230||||||F\r"
)
BROKEN_ERRORS = [
    AckError(100, "required segment PV1 is missing (ADT_A01)", "PV1"),
    AckError(101, "EVN-2 (recorded date time) is required", "EVN", 2),
    AckError(102, "PID-3[2].7 '2024x' is not a valid DT", "PID", 3, 1, 7, repetition=2),
    AckError(102, "PID-7 'notadate' is not a valid DTM", "PID", 7),
    AckError(102, "OBX-5 'foo' is not a valid NM", "OBX", 5),
    AckError(102, "OBX[3]-5 '20240230' is not a valid DT", "OBX", 5, 3),
]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def channel(steps: str):
    Path("routes.yaml").write_text("routes: []\n")
    Path("channels").mkdir(exist_ok=True)
    items = textwrap.indent(textwrap.dedent(steps), "  ")
    Path("channels/x.yaml").write_text("name: x\nsteps:\n" + items)
    return load("routes.yaml", Context())[1].channels["x"]


def step(**options):
    config = validate.Validate.spec.build(options)
    return validate.Validate(config, Context(base_dir=Path.cwd()))


def errors_of(text: str, **options) -> list[AckError]:
    try:
        step(**options).run(Message(text), RunContext("x"))
    except StepError as exc:
        assert exc.errors, exc.reason
        return exc.errors
    return []


# config -----------------------------------------------------------------------------------
def test_defaults_and_options_through_the_loader():
    ch = channel("- validate: {}\n- validate: {version: 2.3.1, structure: no, tables: yes}\n")
    first, second = ch.steps
    assert first.config.as_dict() == {"version": None, "structure": True, "datatypes": True,
                            "tables": False, "ignore_z_segments": True}  # fmt: skip
    assert (second.version, second.structure, second.tables) == ("2.3.1", False, True)


def test_config_errors_with_their_location():
    with pytest.raises(ConfigError) as caught:
        channel(
            """\
            - validate: {version: 2.9}
            - validate: {structure: maybe, ignore_z: true}
            - validate:
            """
        )
    assert caught.value.format().splitlines() == [
        "channels/x.yaml:3:25: invalid value '2.9' for 'version' (allowed: 2.1, 2.2, 2.3, "
        "2.3.1, 2.4, 2.5, 2.5.1, 2.6, 2.7, 2.8, 2.8.1, 2.8.2); did you mean '2.8'?",
        "channels/x.yaml:4:27: expected bool for 'structure', got string 'maybe'",
        "channels/x.yaml:4:34: unknown key 'ignore_z' in step 2 (validate); "
        "did you mean 'ignore_z_segments'?",
        "channels/x.yaml:5:14: expected mapping for 'validate', got null",
        "4 errors in 1 file.",
    ]


# one ERR per failure ----------------------------------------------------------------------
def test_a_valid_message_passes():
    assert errors_of(GOOD) == []


def test_every_failure_is_one_error_with_its_location():
    assert errors_of(BROKEN) == BROKEN_ERRORS


def test_through_channel_run_the_errors_and_the_reason_come_back():
    ch = channel("- set: {MSH-5: EPIC}\n- validate: {}\n")
    result = ch.run(Message(BROKEN))
    assert (result.status, result.step, result.step_kind) == (ERRORED, 2, "validate")
    assert result.reason == "6 validation errors: required segment PV1 is missing (ADT_A01)"
    assert result.errors == BROKEN_ERRORS
    assert ch.run(Message(GOOD)).status == PASSED


def test_the_ack_has_one_err_per_failure():
    errors = errors_of(BROKEN)
    header = read_header(BROKEN.encode())
    ack = build_ack(header, "AE", now=0, control_id="ACK1", errors=errors).split("\r")
    assert ack[1:-1] == [
        "MSA|AE|CTRL1",
        "ERR||PV1^1|100^Segment sequence error^HL70357^^^^^^required segment PV1 is missing "
        "(ADT_A01)|E",
        "ERR||EVN^1^2|101^Required field missing^HL70357^^^^^^EVN-2 (recorded date time) is "
        "required|E",
        "ERR||PID^1^3^2^7|102^Data type error^HL70357^^^^^^PID-3[2].7 '2024x' is not a valid DT|E",
        "ERR||PID^1^7|102^Data type error^HL70357^^^^^^PID-7 'notadate' is not a valid DTM|E",
        "ERR||OBX^1^5|102^Data type error^HL70357^^^^^^OBX-5 'foo' is not a valid NM|E",
        "ERR||OBX^3^5|102^Data type error^HL70357^^^^^^OBX[3]-5 '20240230' is not a valid DT|E",
    ]


def test_the_step_error_code_is_the_first_errors():
    with pytest.raises(StepError) as caught:
        step().run(Message(BROKEN), RunContext("x"))
    assert caught.value.code == 100


def test_single_error_reason_is_singular():
    with pytest.raises(StepError) as caught:
        step().run(Message(GOOD.replace("19800101", "1980-01-01")), RunContext("x"))
    assert caught.value.reason == "1 validation error: PID-7 '1980-01-01' is not a valid DTM"


# options ----------------------------------------------------------------------------------
def test_structure_false_checks_fields_only():
    assert errors_of(BROKEN, structure=False) == BROKEN_ERRORS[1:]


def test_datatypes_false_checks_segments_only():
    assert errors_of(BROKEN, datatypes=False) == BROKEN_ERRORS[:1]


def test_z_segments_are_reported_when_not_ignored():
    assert errors_of(BROKEN, ignore_z_segments=False, datatypes=False) == [
        AckError(100, "segment ZPV is not part of ADT_A01", "ZPV"),
        AckError(100, "required segment PV1 is missing (ADT_A01)", "PV1"),
    ]


def test_tables_checks_id_values():
    found = errors_of(BROKEN, tables=True)
    assert AckError(103, "PID-24 'X' is not in HL7 table 0136", "PID", 24) in found
    assert len(found) == len(BROKEN_ERRORS) + 1


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        (  # out of order
            "PID|1||1\rEVN|A01|20240101\rPV1|1|I\r",
            [AckError(100, "required segment EVN is missing (ADT_A01)", "EVN"),
             AckError(100, "segment EVN is not allowed at this position in ADT_A01", "EVN")],
        ),
        (  # repeated too often
            "EVN|A01|20240101\rPID|1||1\rPV1|1|I\rPV1|2|O\r",
            [AckError(100, "segment PV1 is not allowed at this position in ADT_A01", "PV1",
                      None, 2)],
        ),
        (  # not part of the structure, not defined at all
            "EVN|A01|20240101\rPID|1||1\rPV1|1|I\rORC|NW\rXYZ|1\r",
            [AckError(100, "segment ORC is not part of ADT_A01", "ORC"),
             AckError(100, "segment XYZ is not defined in HL7 2.5", "XYZ")],
        ),
        (  # a group: IN2 needs its IN1
            "EVN|A01|20240101\rPID|1||1\rPV1|1|I\rIN1|1|P\rIN2|1\rIN2|2\r",
            [AckError(100, "segment IN2 is not allowed at this position in ADT_A01", "IN2",
                      None, 2)],
        ),
    ],
)  # fmt: skip
def test_segment_sequence_errors(segments, expected):
    assert errors_of(f"{MSH}\r{segments}", datatypes=False) == expected


def test_a_missing_required_group_names_its_leading_segment():
    text = "MSH|^~\\&|LAB||EHR||20240101||ORU^R01^ORU_R01|1|P|2.5\rPID|1||1\r"
    assert errors_of(text, datatypes=False) == [
        AckError(100, "required group ORU_R01.ORDER_OBSERVATION (starting with OBR) is missing "
                 "(ORU_R01)", "OBR"),
    ]  # fmt: skip


def test_repetitions_and_lengths():
    text = GOOD.replace("19800101|F", "19800101~19800102|" + "F" * 21)
    assert errors_of(text) == [
        AckError(102, "PID-7 (date time of birth) does not repeat, got 2 repetitions", "PID", 7),
        AckError(102, "PID-8 has 21 characters; IS allows 20", "PID", 8),
    ]


def test_escapes_are_decoded_before_checking_and_nulls_are_skipped():
    text = GOOD.replace("PV1|1|I", 'PV1|1|I\rOBX|1|NM|X||1\\E\\||||||F\rOBX|2|NM|X||""||||||F')
    assert errors_of(text) == [
        AckError(102, "OBX-5 '1\\\\' is not a valid NM", "OBX", 5),
    ]


@pytest.mark.parametrize("value", ["1e5", "NaN", "Infinity", "1,5", "- 1"])
def test_nm_is_hl7_nm_not_python_decimal(value):
    text = GOOD.replace("PV1|1|I", f"PV1|1|I\rOBX|1|NM|X||{value}||||||F")
    assert errors_of(text) == [AckError(102, f"OBX-5 {value!r} is not a valid NM", "OBX", 5)]


@pytest.mark.parametrize("value", ["-1.5", "+2", ".5", "10.", "0"])
def test_valid_nm_values(value):
    assert errors_of(GOOD.replace("PV1|1|I", f"PV1|1|I\rOBX|1|NM|X||{value}||||||F")) == []


def test_ts_before_25_is_checked_as_a_date_time():
    text = GOOD.replace("|2.5", "|2.3").replace("ADT^A01^ADT_A01", "ADT^A08")
    assert errors_of(text) == []
    assert errors_of(text.replace("19800101", "1980013")) == [
        AckError(102, "PID-7 '1980013' is not a valid DTM", "PID", 7),
    ]


def test_custom_delimiters():
    text = ("MSH^~|\\&^SND^200M^RCV^200^20120918173931-0500^^ADT~A24^1^T^2.4\r"
            "EVN^A24^20120918173931-0500\rPID^1^^1~~~FOO&&0363|2^^SMITH~JOHN^^notadate\r"
            "PID^2^^22222^^DOE\r")  # fmt: skip
    assert errors_of(text) == [AckError(102, "PID-7 'notadate' is not a valid DTM", "PID", 7)]


# versions and structures ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("msh12", "detail"),
    [
        ("2.9", "HL7 version '2.9' is not supported (hl7apy knows 2.1, 2.2, 2.3, 2.3.1, 2.4, "
                "2.5, 2.5.1, 2.6, 2.7, 2.8, 2.8.1, 2.8.2)"),
        ("", "MSH-12 (version id) is empty"),
    ],
)  # fmt: skip
def test_unsupported_version_is_203(msh12, detail):
    with pytest.raises(StepError) as caught:
        step().run(Message(GOOD.replace("|2.5\r", f"|{msh12}\r")), RunContext("x"))
    assert (caught.value.reason, caught.value.code) == (detail, 203)
    assert caught.value.errors == [AckError(203, detail, "MSH", 12)]


def test_configured_version_overrides_msh12():
    text = GOOD.replace("|2.5\r", "|9.9\r")
    assert errors_of(text, version="2.5") == []
    assert errors_of(GOOD.replace("|2.5\r", "|2.5^^\r")) == []  # MSH-12.1 is the version


def test_structure_derived_from_type_and_trigger():
    a04 = GOOD.replace("ADT^A01^ADT_A01", "ADT^A04")  # table 0354: ADT_A01
    assert errors_of(a04) == []
    assert errors_of(a04.replace("PV1|1|I\r", ""), datatypes=False) == [
        AckError(100, "required segment PV1 is missing (ADT_A01)", "PV1")
    ]


def test_unknown_structure_and_message_type():
    text = GOOD.replace("ADT^A01^ADT_A01", "ADT^A04^ADT_A04")
    assert errors_of(text) == [
        AckError(103, "MSH-9.3 message structure 'ADT_A04' is not defined in HL7 2.5",
                 "MSH", 9, 1, 3),
    ]  # fmt: skip
    assert errors_of(GOOD.replace("ADT^A01^ADT_A01", "ZZZ^Z01")) == [
        AckError(200, "HL7 2.5 defines no message structure for MSH-9 ZZZ^Z01", "MSH", 9),
    ]


def test_hl7apy_failures_become_a_step_error(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(validate, "datatype_factory", boom)
    with pytest.raises(StepError) as caught:
        step().run(Message(GOOD), RunContext("x"))
    assert caught.value.reason == "validation could not run: RuntimeError: boom"
    assert caught.value.errors == []


# shared samples ---------------------------------------------------------------------------
SAMPLE_FILES = [
    p for p in (sorted(SAMPLES.glob("*.hl7")) if SAMPLES.is_dir() else [])
    if not p.name.startswith(("batch", "file", "ack"))
]  # fmt: skip

# (code, segment, field, occurrence) of each failure; why in the comments
EXPECTED = {
    "adt_a01_v23_python-hl7": [
        (100, "EVN", None, 1),  # no EVN segment
        (102, "PID", 4, 1),  # PID-4 repeats; hl7apy's 2.3 tables say it does not
    ],
    "adt_a01_v26_camel": [],
    "adt_a03_v25_lf_source_hapi": [
        (102, "PV1", 3, 1),  # PL.11 HD.1 (IS) 'OSPEDALE MAGGIORE DI LODI' > 20 characters
        (102, "PV1", 6, 1),
    ],
    "adt_a04_v25_python-hl7": [],
    "adt_a04_v26_sparse_msh_camel": [
        (103, "MSH", 9, 1),  # MSH-9.3 ADT_A04 is no 2.6 structure (A04 uses ADT_A01)
        (100, "EVN", None, 1),
        (100, "PV1", None, 1),
        (101, "MSH", 7, 1),
        (101, "MSH", 10, 1),
        (101, "MSH", 11, 1),
        (102, "PID", 7, 1),  # '98765432' is no date
    ],
    "adt_a08_v23_camel": [],
    "adt_a24_v24_custom_separators_hapi": [],
    "orm_o01_v22_hapi": [(100, "NTE", None, 1)],  # hl7apy's 2.2 ORM_O01 requires an NTE
    "orm_o01_v23_camel": [
        (100, "OBR", None, 2),  # three OBRs under one ORC
        (100, "OBR", None, 3),
        (101, "PV1", 2, 1),
        (101, "ORC", 7, 1),
        (102, "ORC", 14, 1),  # TN ' 819600'
    ],
    "oru_r01_v24_escapes_hapi": [(100, "PV1", None, 1)],  # PV1 without PID
    "oru_r01_v24_python-hl7": [
        (102, "PID", 7, 1),  # '196203520'
        (102, "OBX", 3, 1),  # CE.3 (IS) 'POST 12H CFST:MCNC:PT:SER/PLAS:QN' > 20 characters
        (102, "OBX", 3, 2),
    ],
}


@pytest.mark.parametrize("path", SAMPLE_FILES or [None], ids=lambda p: p.stem if p else "none")
def test_shared_samples_pass_or_fail_with_located_errors(path):
    if path is None:
        pytest.skip(f"shared samples not found at {SAMPLES}")
    message = Message.from_bytes(path.read_bytes())
    found = errors_of(message.to_text())
    for error in found:
        assert error.segment and error.detail and error.code in (100, 101, 102, 103, 200)
    if path.stem in EXPECTED:
        assert [(e.code, e.segment, e.field, e.occurrence) for e in found] == EXPECTED[path.stem]
