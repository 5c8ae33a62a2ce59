"""Field paths and the channel message: reads, writes, escapes, byte-identical pass-through."""

from __future__ import annotations

import pytest

from engine.hl7.message import Message, PathError, parse_path
from engine.hl7.path import ALL

from .conftest import samples_or_skip

TEXT = (
    "MSH|^~\\&|LAB|HOSP|EPIC|HOSP|20240101||ORU^R01|C1|P|2.5\r"
    "PID|1||111^^^MRN^MR~222^^^EMPI^PI||DOE^JOHN^Q~ALIAS^A||19700101|M\r"
    "OBR|1|ORD1|FIL1|GLU^Glucose^L\r"
    "OBX|1|NM|GLU^Glucose^L||182|mg/dL|70-105|H\r"
    "OBX|2|NM|K^Potassium^L||4.1|mmol/L|3.5-5.1|N\r"
    "OBX|3|FT|NOTE^Note^L||see \\F\\ below \\T\\ here\\.br\\next|\r"
)


@pytest.fixture
def msg() -> Message:
    return Message(TEXT)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("PID-3", "111^^^MRN^MR"),  # composite: as written
        ("PID-3.1", "111"),
        ("PID-3[2].1", "222"),
        ("PID-3[2].4", "EMPI"),
        ("PID-5.1", "DOE"),
        ("PID-5[2].2", "A"),
        ("OBX[2]-5", "4.1"),
        ("OBX[3]-5", "see | below & here\\.br\\next"),  # delimiters decoded, formatting kept
        ("MSH-1", "|"),
        ("MSH-2", "^~\\&"),
        ("MSH-9.1", "ORU"),
        ("MSH-9.2", "R01"),
        ("MSH-10", "C1"),
        ("OBX[1]", "OBX|1|NM|GLU^Glucose^L||182|mg/dL|70-105|H"),
    ],
)
def test_get(msg, path, expected):
    assert msg.get(path) == expected


def test_get_every_occurrence_and_repetition(msg):
    assert msg.get_all("OBX[*]-3.1") == ["GLU", "K", "NOTE"]
    assert msg.get_all("PID-3[*].1") == ["111", "222"]
    assert msg.get_all("OBX-3.1") == ["GLU"]


@pytest.mark.parametrize(
    "path",
    ["ZZZ-1", "OBX[4]-5", "PID-99", "PID-3[3].1", "PID-3.9", "PID-5.1.2", "PID-2"],
)
def test_missing_or_empty(msg, path):
    assert msg.get(path) in (None, "")
    assert not msg.exists(path)


def test_subcomponent():
    m = Message("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||1^^^H&1.2.3&ISO^MR\r")
    assert m.get("PID-3.4.2") == "1.2.3"
    assert m.get("PID-3.4") == "H&1.2.3&ISO"
    m.set("PID-3.4.3", "DNS")
    assert m.get("PID-3.4") == "H&1.2.3&DNS"


@pytest.mark.parametrize(
    "bad", ["PID", "pid-3", "PID-0", "PID-3.", "PID-3[0]", "PID-x", "PIDX-3", "", "MSH-2.1"]
)
def test_bad_paths(bad):
    if bad == "PID":
        assert parse_path(bad).is_segment
        return
    with pytest.raises(PathError, match=r"field path|delimiters"):
        parse_path(bad)


def test_parse_path_parts():
    p = parse_path("OBX[*]-3[2].1.2")
    assert (p.segment, p.occurrence, p.field, p.repetition, p.component, p.subcomponent) == (
        "OBX", ALL, 3, 2, 1, 2)  # fmt: skip


def test_set_escapes_and_pads(msg):
    msg.set("PID-5.1", "O|BRIEN & CO")
    assert msg.get("PID-5.1") == "O|BRIEN & CO"
    assert msg.segments[1].split("|")[5] == "O\\F\\BRIEN \\T\\ CO^JOHN^Q~ALIAS^A"
    msg.set("PID-30.3", "x")
    assert msg.segments[1].endswith("|M" + "|" * 22 + "^^x")
    msg.set("MSH-5", "RCV2")
    assert msg.segments[0].startswith("MSH|^~\\&|LAB|HOSP|RCV2|HOSP|")


def test_set_every_occurrence_and_raw(msg):
    assert msg.set("OBX[*]-8", "X") == 3
    assert msg.get_all("OBX[*]-8") == ["X", "X", "X"]
    msg.set("PID-5", "ROE^JANE", raw=True)
    assert msg.get("PID-5.2") == "JANE"
    assert msg.get("PID-5[2].1") == "ALIAS"  # other repetitions kept


def test_set_repetition_beyond_end(msg):
    msg.set("PID-3[4].1", "444")
    assert msg.get_all("PID-3[*].1") == ["111", "222", "", "444"]


def test_set_missing_segment_is_an_error(msg):
    with pytest.raises(PathError, match="not there"):
        msg.set("ZPV-1", "x")
    with pytest.raises(PathError, match="delimiters"):
        msg.set("MSH-2", "^~\\#")


def test_delete(msg):
    assert msg.delete("OBX[2]") == 1
    assert msg.get_all("OBX[*]-1") == ["1", "3"]
    msg.delete("PID-3[1]")
    assert msg.get_all("PID-3[*].1") == ["222"]
    msg.delete("PID-5")
    assert msg.get("PID-5") == ""
    assert msg.delete("OBX[*]") == 2
    assert msg.segment_indexes("OBX") == []
    with pytest.raises(PathError):
        msg.delete("MSH")


def test_custom_encoding_characters():
    m = Message("MSH$%~\\&$A$B$C$D$2024$$ADT%A01$1$P$2.5\rPID$1$$7%%%H\r")
    assert m.get("PID-3.4") == "H"
    assert m.get("MSH-9.2") == "A01"
    m.set("PID-3.1", "a$b")
    assert m.segments[1] == "PID$1$$a\\F\\b%%%H"
    m2 = Message("MSH^~|\\&^A^B^C^D^2024^^ADT~A24^1^P^2.4\rPID^1^^X~Y\r")
    assert m2.get("PID-3.2") == "Y" and m2.get("MSH-9.2") == "A24"


def test_unchanged_message_is_byte_identical():
    raw = TEXT.replace("\r", "\r\n").encode()
    m = Message.from_bytes(raw)
    m.get("PID-3.1")
    m.set("PID-3.1", "111")  # same value: nothing changes
    assert not m.dirty and m.to_bytes() == raw


def test_every_shared_sample_passes_through_byte_identical():
    samples = samples_or_skip()
    names = sorted(
        p.name for p in samples.glob("*.hl7") if not p.name.startswith(("batch", "file"))
    )
    assert len(names) >= 10
    for name in names:
        raw = (samples / name).read_bytes()
        m = Message.from_bytes(raw)
        for seg in ("MSH", "PID", "OBX"):
            m.get_all(f"{seg}[*]-3")
        assert m.to_bytes() == raw, name
        assert m.to_text().encode("latin-1") == raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")


def test_change_then_change_back_reserialises_the_same(msg):
    msg.set("PID-5.1", "X")
    msg.set("PID-5.1", "DOE")
    assert msg.to_text() == TEXT


# protocol.md section B, cases 28-31 ------------------------------------------------------------
def test_escapes_decoded_on_read_and_encoded_on_write():  # case 28
    m = Message(
        "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rNTE|1||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X41\\\r"
    )
    assert m.get("NTE-3") == "a|b^c&d~e\\fA"
    m.set("NTE-3", "x|y^z&w~v\\u")
    assert m.segments[1] == "NTE|1||x\\F\\y\\S\\z\\T\\w\\R\\v\\E\\u"
    assert m.get("NTE-3") == "x|y^z&w~v\\u"


def test_formatting_escapes_round_trip_byte_exact():  # case 29
    data = (samples_or_skip() / "oru_r01_v24_escapes_hapi.hl7").read_bytes()
    m = Message.from_bytes(data)
    value = m.get("OBX-5")
    assert "\\.br\\" in value or "\\H\\" in value or "\\N\\" in value
    m.set("MSH-5", m.get("MSH-5"))  # a no-op write
    assert m.to_bytes() == data


def test_repetitions_keep_positions_including_empty():  # case 30
    m = Message("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||A~B~~C|~X\r")
    assert m.get_all("PID-3[*]") == ["A", "B", "", "C"]
    assert m.get_all("PID-4[*]") == ["", "X"]
    assert m.get("PID-4[2]") == "X"
    m.set("PID-3[2]", "b")
    assert m.segments[1] == "PID|1||A~b~~C|~X"


def test_trailing_empty_fields_and_null_kept():  # case 31
    m = Message('MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPV1|1|""||X|||\r')
    assert m.get("PV1-2") == '""'  # HL7 null: delete the value downstream
    assert m.get("PV1-3") == ""  # empty: no information
    assert m.exists("PV1-2") and not m.exists("PV1-3")
    m.set("PV1-4", "Y")
    assert m.segments[1] == 'PV1|1|""||Y|||'
