"""protocol.md sections B and C and the ACK layout of section 2: the intake decision, pure."""

from __future__ import annotations

import pytest

from engine.hl7.ack import AckError, build_ack
from engine.hl7.header import NoUsableHeader, normalize_segments, read_header
from engine.intake import ack_code_to_send, assess
from engine.router import Router

from .conftest import samples_or_skip
from .settings import listener, route

NOW = 1704110401.0  # 2024-01-01 12:00:01 UTC
INBOUND = b"MSH|^~\\&|SND|SF|RCV|RF|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5\rPID|1\r"
LISTENER = listener(
    name="lab-in",
    ack="on_receipt",
    charset="iso-8859-1",
    versions=["2.3", "2.4", "2.5", "2.6"],
    processing_ids=["P", "T", "D"],
)
ROUTER = Router(
    [route(match={"type": "ADT"}, to=["adt"]), route(match={"type": "ORU"}, to=["lab"])]
)


def msh(**fields) -> bytes:
    """An inbound message with MSH-n overridden by f<n>=value."""
    parts = INBOUND.split(b"\r")[0].decode().split("|")
    parts += [""] * (20 - len(parts))
    for k, v in fields.items():
        parts[int(k[1:]) - 1] = v
    while parts[-1] == "":
        parts.pop()
    return ("|".join(parts) + "\rPID|1\r").encode()


def ack_lines(payload: bytes, listener=LISTENER, router=ROUTER, control_id="ACK0001") -> list[str]:
    a = assess(payload, listener, router)
    code = ack_code_to_send(a, listener.enhanced_ack)
    assert code is not None
    return build_ack(a.header, code, now=NOW, control_id=control_id, errors=a.errors).split("\r")


# section 2: layout ----------------------------------------------------------------------
def test_aa_layout_exact():  # case 39, 50
    assert ack_lines(INBOUND) == [
        "MSH|^~\\&|RCV|RF|SND|SF|20240101120001+0000||ACK^A01^ACK|ACK0001|P|2.5",
        "MSA|AA|CTRL1",
        "",
    ]


def test_ae_layout_v25_and_v23():
    h25 = read_header(INBOUND)
    err = AckError(102, "bad date", "PID", 7)
    assert build_ack(h25, "AE", now=NOW, control_id="X", errors=[err]).split("\r")[1:3] == [
        "MSA|AE|CTRL1",
        "ERR||PID^1^7|102^Data type error^HL70357^^^^^^bad date|E",
    ]
    h23 = read_header(INBOUND.replace(b"|2.5", b"|2.3"))
    lines = build_ack(h23, "AE", now=NOW, control_id="ACK0003", errors=[err]).split("\r")
    assert lines[0].endswith("||ACK^A01|ACK0003|P|2.3")
    assert lines[1:3] == ["MSA|AE|CTRL1|Data type error",
                          "ERR|PID^^7^102&Data type error&HL70357&&bad date"]  # fmt: skip


def test_several_failures_one_err_each():  # case 43
    errs = [AckError(101, "missing", "PID", 1), AckError(102, "bad", "PV1", 44)]
    lines = build_ack(read_header(INBOUND), "AE", now=NOW, errors=errs).split("\r")
    assert [x for x in lines if x.startswith("ERR")] == [
        "ERR||PID^1^1|101^Required field missing^HL70357^^^^^^missing|E",
        "ERR||PV1^1^44|102^Data type error^HL70357^^^^^^bad|E",
    ]
    h23 = read_header(INBOUND.replace(b"|2.5", b"|2.3"))
    err_seg = [x for x in build_ack(h23, "AE", now=NOW, errors=errs).split("\r") if x[:3] == "ERR"]
    assert err_seg == ["ERR|PID^^1^101&Required field missing&HL70357&&missing~"
                       "PV1^^44^102&Data type error&HL70357&&bad"]  # fmt: skip


def test_ack_never_copies_msh9_3_and_msh15_16():  # section 2, CAM leak
    lines = ack_lines(msh(f15="AL", f16="NE"), LISTENER.replace(enhanced_ack=False))
    fields = lines[0].split("|")
    assert fields[8] == "ACK^A01^ACK"
    assert len(fields) == 12  # nothing after MSH-12: MSH-15/16 empty


def test_unique_ack_control_ids():
    a = assess(INBOUND, LISTENER, ROUTER)
    ids = {build_ack(a.header, "AA", now=NOW).split("\r")[0].split("|")[9] for _ in range(200)}
    assert len(ids) == 200 and all(len(i) == 20 for i in ids)


def test_detail_text_is_escaped():
    err = AckError(207, "disk | full ^ now")
    line = build_ack(read_header(INBOUND), "AE", now=NOW, errors=[err]).split("\r")[2]
    assert line == "ERR|||207^Application internal error^HL70357^^^^^^disk \\F\\ full \\S\\ now|E"


# section B: parsing -----------------------------------------------------------------------
def test_lf_separators_normalised():  # case 23
    a = assess(INBOUND.replace(b"\r", b"\n"), LISTENER, ROUTER)
    assert a.header.version == "2.5" and a.code == "AA"


def test_lf_separators_not_normalised_when_disabled():  # case 23 (configurable)
    a = assess(INBOUND.replace(b"\r", b"\n"), LISTENER.replace(normalize_newlines=False), ROUTER)
    assert a.code == "AR"  # MSH-12 would read "2.5\nPID": rejected, never parsed into MSH-12
    assert any(e.code == 203 for e in a.errors)


def test_crlf_separators():  # case 24
    norm = normalize_segments(INBOUND.replace(b"\r", b"\r\n"))
    assert norm == INBOUND
    assert assess(INBOUND.replace(b"\r", b"\r\n"), LISTENER, ROUTER).code == "AA"


def test_empty_segments_and_leading_blank_lines():  # case 25
    a = assess(b"\r\n" + INBOUND.replace(b"\rPID", b"\r\r\rPID"), LISTENER, ROUTER)
    assert a.code == "AA" and a.header.control_id == "CTRL1"


@pytest.mark.parametrize(
    ("inbound", "first_line"),
    [
        (b"MSH$%~\\&$SND$SF$RCV$RF$20240101$$ADT%A01$C1$P$2.5\r",
         "MSH$%~\\&$RCV$RF$SND$SF$20240101120001+0000$$ACK%A01%ACK$ACK0001$P$2.5"),
        (b"MSH^~|\\&^SND^SF^RCV^RF^20240101^^ADT~A24^C1^P^2.4^^^AL^AL^\r",
         "MSH^~|\\&^RCV^RF^SND^SF^20240101120001+0000^^ACK~A24~ACK^ACK0001^P^2.4"),
        (b"MSH|^~\\}|SND|SF|RCV|RF|20240101||ADT^A01|C1|P|2.3\r",
         "MSH|^~\\}|RCV|RF|SND|SF|20240101120001+0000||ACK^A01|ACK0001|P|2.3"),
    ],
)  # fmt: skip
def test_custom_delimiters_echoed(inbound, first_line):  # case 26
    lines = ack_lines(inbound, LISTENER.replace(enhanced_ack=False))
    assert lines[0] == first_line


def test_custom_separator_sample():  # case 26 with the HAPI sample
    data = (samples_or_skip() / "adt_a24_v24_custom_separators_hapi.hl7").read_bytes()
    a = assess(data, LISTENER, Router([route(to=["x"])]))
    assert (a.header.message_type, a.header.trigger, a.header.control_id) == (
        "ADT",
        "A24",
        "2003582144",
    )
    assert ack_code_to_send(a) == "CA"  # MSH-15 = AL: enhanced accept ACK


@pytest.mark.parametrize("enc", ["^~\\", "^^\\&", "^~\\&#X", "^~\\&\\"])
def test_bad_encoding_characters_rejected_with_ar(enc):  # case 27
    a = assess(msh(f2=enc), LISTENER, ROUTER)
    assert a.code == "AR" and a.status == "rejected"
    assert (a.errors[0].code, a.errors[0].field) == (102, 2)
    lines = ack_lines(msh(f2=enc))
    assert lines[0].startswith("MSH|^~\\&|RCV|")  # standard delimiters, not the broken ones
    assert lines[1] == "MSA|AR|CTRL1"


def test_truncation_character_allowed():  # v2.7 MSH-2 has five characters
    assert assess(msh(f2="^~\\&#", f12="2.5"), LISTENER, ROUTER).code == "AA"


@pytest.mark.parametrize(
    ("msh18", "charset"),
    [("8859/1", "iso-8859-1"), ("8859/5", "iso-8859-5"), ("UNICODE UTF-8", "utf-8"),
     ("ASCII", "ascii")],
)  # fmt: skip
def test_msh18_charsets(msh18, charset):  # case 32
    a = assess(msh(f18=msh18), LISTENER, ROUTER)
    assert a.header.charset == charset and a.code == "AA"


def test_utf16_message():  # case 32
    payload = INBOUND.decode().replace("|2.5", "|2.5||||||UNICODE UTF-16").encode("utf-16")
    a = assess(payload, LISTENER, ROUTER)
    assert a.header.charset == "utf-16" and a.header.control_id == "CTRL1" and a.code == "AA"


def test_non_ascii_sending_application_decoded_with_msh18():
    payload = "MSH|^~\\&|LABÖ|SF|RCV|RF|2024||ORU^R01|C1|P|2.5||||||UNICODE UTF-8\r".encode()
    assert assess(payload, LISTENER, ROUTER).header.sending_application == "LABÖ"


def test_unknown_msh18_falls_back_and_warns():  # case 33
    a = assess(msh(f18="ISO_IR 100"), LISTENER.replace(charset="cp1252"), ROUTER)
    assert a.header.charset == "cp1252" and a.code == "AA"
    assert a.warnings == ["unknown_charset"]


def test_non_ascii_without_msh18_uses_listener_default():  # case 34
    payload = INBOUND.replace(b"PID|1", b"PID|1||||M\xfcller")
    a = assess(payload, LISTENER.replace(charset="iso-8859-1"), ROUTER)
    assert a.header.charset == "iso-8859-1" and a.code == "AA"


def test_utf8_bom_stripped():  # case 35
    a = assess(b"\xef\xbb\xbf" + INBOUND, LISTENER, ROUTER)
    assert a.code == "AA" and a.header.control_id == "CTRL1"


@pytest.mark.parametrize("payload", [b"WRONG", b"INVALID PAYLOAD", b"PID|1\r", b"\x00\x01\x02"])
def test_not_msh_rejected_without_ack(payload):  # case 36
    a = assess(payload, LISTENER, ROUTER)
    assert a.status == "rejected" and a.code is None and a.reason
    assert ack_code_to_send(a) is None


def test_too_few_fields_no_half_built_ack():  # case 37 (CAM's example)
    payload = b"MSH|^~\\&|ADT|EPIC|JCAPS|CC|20161206193919|RISTECH|ADT^A08\r"
    with pytest.raises(NoUsableHeader, match="an ACK needs MSH-9 to MSH-12"):
        read_header(payload)
    a = assess(payload, LISTENER, ROUTER)
    assert a.code is None and a.status == "rejected"


def test_segments_run_together_rejected():  # case 38
    payload = INBOUND.replace(b"\r", b"", 1)  # "...|P|2.5PID|1"
    a = assess(payload, LISTENER, ROUTER)
    assert a.code == "AR" and a.errors[0].code == 203


def test_sparse_msh_with_empty_control_id_gets_ar():  # camel sparse MSH sample
    data = (samples_or_skip() / "adt_a04_v26_sparse_msh_camel.hl7").read_bytes()
    a = assess(data, LISTENER, ROUTER)
    assert a.code == "AR"
    assert [(e.code, e.field) for e in a.errors][:1] == [(101, 10)]


# section C: acknowledgement semantics -------------------------------------------------------
def test_no_route_after_routing_is_ar_200():  # case 40
    lines = ack_lines(msh(f9="SIU^S12"), LISTENER.replace(ack="after_routing"))
    assert lines[1:3] == ["MSA|AR|CTRL1",
                          "ERR||MSH^1^9|200^Unsupported message type^HL70357^^^^^^"
                          "no route for type SIU trigger S12|E"]  # fmt: skip


def test_no_route_on_receipt_is_aa_and_unrouted():
    a = assess(msh(f9="SIU^S12"), LISTENER, ROUTER)
    assert a.code == "AA" and a.status == "unrouted"


def test_routing_ignores_msh9_3():
    a = assess(msh(f9="ADT^A01^WRONG_STRUCT"), LISTENER.replace(ack="after_routing"), ROUTER)
    assert a.code == "AA" and a.channels == ["adt"]


def test_unsupported_version_ar_203():  # case 41
    lines = ack_lines(msh(f12="2.9"))
    assert lines[1] == "MSA|AR|CTRL1"
    assert lines[2].startswith("ERR||MSH^1^12|203^Unsupported version id^HL70357")


def test_unsupported_processing_id_ar_202():  # case 41
    a = assess(msh(f11="X"), LISTENER, ROUTER)
    assert a.code == "AR" and (a.errors[0].code, a.errors[0].field) == (202, 11)


@pytest.mark.parametrize(
    ("msh15", "code", "sent"),
    [("AL", "AA", "CA"), ("NE", "AA", None), ("ER", "AA", None), ("SU", "AA", "CA"),
     ("AL", "AR", "CR"), ("ER", "AR", "CR"), ("SU", "AR", None), ("", "AA", "CA")],
)  # fmt: skip
def test_enhanced_mode_accept_acks(msh15, code, sent):  # case 48
    fields = {"f15": msh15, "f16": "AL"}
    if code == "AR":
        fields["f12"] = "2.9"
    a = assess(msh(**fields), LISTENER, ROUTER)
    assert a.code == code
    assert ack_code_to_send(a) == sent


def test_both_empty_is_original_mode():  # case 48
    assert ack_code_to_send(assess(INBOUND, LISTENER, ROUTER)) == "AA"


def test_enhanced_mode_can_be_switched_off():
    a = assess(msh(f15="NE", f16="NE"), LISTENER, ROUTER)
    assert ack_code_to_send(a, enhanced_ack=False) == "AA"


def test_invalid_msh15_is_an_error():  # case 49
    a = assess(msh(f15="XX"), LISTENER, ROUTER)
    assert a.code == "AR" and (a.errors[0].code, a.errors[0].field) == (103, 15)
    assert ack_code_to_send(a) == "AR"  # original mode: the condition itself is unusable


def test_unsolicited_ack_is_not_acked():  # case 22
    data = (samples_or_skip() / "ack_aa_v23_python-hl7.hl7").read_bytes()
    a = assess(data, LISTENER, ROUTER)
    assert a.code is None and a.status == "rejected" and "unsolicited" in a.reason


@pytest.mark.parametrize(
    "name",
    ["adt_a01_v23_python-hl7.hl7", "adt_a01_v26_camel.hl7", "adt_a03_v25_lf_source_hapi.hl7",
     "adt_a04_v25_python-hl7.hl7", "adt_a08_v23_camel.hl7", "orm_o01_v22_hapi.hl7",
     "orm_o01_v23_camel.hl7", "oru_r01_v24_escapes_hapi.hl7", "oru_r01_v24_python-hl7.hl7"],
)  # fmt: skip
def test_every_sample_message_is_accepted(name):
    data = (samples_or_skip() / name).read_bytes()
    listener = LISTENER.replace(versions=None, enhanced_ack=False)
    a = assess(data, listener, ROUTER)
    assert a.code == "AA", a.reason
    ack = build_ack(a.header, "AA", now=NOW).split("\r")
    assert ack[1] == f"MSA|AA|{a.header.control_id}"


def test_err_location_with_repetition_and_component():  # ERL: SEG^occ^field^rep^comp^sub
    errs = [AckError(102, "bad", "PID", 3, 1, 4, repetition=2), AckError(102, "b", "PID", 7, 2)]
    lines = build_ack(read_header(INBOUND), "AE", now=NOW, errors=errs).split("\r")
    assert lines[2].split("|")[2] == "PID^1^3^2^4"
    assert lines[3].split("|")[2] == "PID^2^7"
    one = build_ack(
        read_header(INBOUND), "AE", now=NOW, errors=[AckError(102, "c", "PID", 3, 1, 4)]
    )
    assert one.split("\r")[2].split("|")[2] == "PID^1^3^1^4"  # repetition 1 when a component is


@pytest.mark.parametrize(
    ("charset", "msh18", "pid2"),
    [
        ("utf-8", "UNICODE UTF-8", "Müller"),
        ("iso-8859-1", "8859/1", "Müller"),
        # Shift_JIS: the second byte of ポ is 0x7C, the field separator's byte
        ("shift_jis", "ISO IR14", "ポポ"),
    ],
)
def test_patient_id_read_from_the_bytes(charset, msh18, pid2):
    from engine.message_row import _patient_id

    text = (
        f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5||||||{msh18}\r"
        f"PID|1|{pid2}|P\\T\\77^^^H^MR~X9^^^H^PI||DOE^JOHN\r"
    )
    payload = text.encode(charset)
    h = read_header(payload)
    assert h.charset == charset
    assert _patient_id(payload, h) == "P&77"
    assert _patient_id(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\r", h) is None
    assert _patient_id(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1\r", h) is None
