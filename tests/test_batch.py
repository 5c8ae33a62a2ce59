"""protocol.md cases 58-61: drop files split into messages, bad batches rejected, batch ACKs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.hl7.batch import Batch, BatchError, batch_ack, file_ack, split_file
from engine.hl7.header import read_header
from engine.intake import assess

from . import settings
from .conftest import samples_or_skip

NOW = 1704110401.0  # 2024-01-01 12:00:01 UTC
LISTENER = settings.listener(name="drop", charset="iso-8859-1")

BHS = b"BHS|^~\\&|SND|SF|RCV|RF|20240101120000||||B1\r"
M1 = b"MSH|^~\\&|SND|SF|RCV|RF|20240101120000||ADT^A01^ADT_A01|C1|P|2.5\rPID|1\r"
M2 = b"MSH|^~\\&|SND|SF|RCV|RF|20240101120000||ADT^A08^ADT_A01|C2|P|2.5\rPID|2\rPV1|1\r"


def sample(name: str) -> bytes:
    return (samples_or_skip() / name).read_bytes()


def reject_reason(data: bytes) -> str:
    with pytest.raises(BatchError) as info:
        split_file(data)
    return info.value.reason


# case 58: batches and files ---------------------------------------------------------------
def test_sample_batch_splits_with_bts_count():
    data = sample("batch_bhs_bts_python-hl7.hl7")
    batch = split_file(data)
    assert len(batch.messages) == 2
    assert batch.fhs is None and batch.sizes == (2,)
    assert batch.bhs[0].endswith(b"|abchs20070101123401-1")
    ids = [read_header(m).control_id for m in batch.messages]
    assert ids == ["12334456778890", "12334456778891"]
    for m in batch.messages:
        assert m.startswith(b"MSH|") and m.endswith(b"\r") and b"\n" not in m
        assert b"BTS" not in m and b"BHS" not in m
    # Every segment of the file is in a message, header or trailer: nothing lost.
    segments = data.split(b"\r")
    assert sum(m.count(b"\r") for m in batch.messages) == len([s for s in segments if s]) - 2


def test_sample_file_splits_two_batches():
    batch = split_file(sample("file_fhs_bhs_bts_fts_python-hl7.hl7"))
    assert len(batch.messages) == 3
    assert batch.sizes == (2, 1)
    assert batch.fhs is not None and batch.fhs.startswith(b"FHS|^~\\&|")
    ids = [read_header(m).control_id for m in batch.messages]
    assert ids == ["12334456778890", "12334456778891", "12334456778890"]


def test_batch_without_file_header_and_counts_not_valued():
    batch = split_file(BHS + M1 + M2 + b"BTS\r")
    assert batch.messages == (M1, M2) and batch.sizes == (2,)
    assert split_file(BHS + M1 + b"BTS||\r").messages == (M1,)


def test_bad_bts_count_rejects_file():
    data = sample("batch_bhs_bts_python-hl7.hl7").replace(b"BTS|2", b"BTS|3")
    assert "BTS-1 says 3 messages, found 2" in reject_reason(data)
    assert "not a count" in reject_reason(BHS + M1 + b"BTS|x\r")


def test_bad_fts_count_rejects_file():
    data = sample("file_fhs_bhs_bts_fts_python-hl7.hl7")
    assert "FTS-1 says 3 batches, found 2" in reject_reason(data.replace(b"FTS|2", b"FTS|3"))
    # One batch count wrong is enough to reject the whole file.
    assert "BTS-1 says 2" in reject_reason(data.replace(b"BTS|1", b"BTS|2"))


# case 59: malformed batches reject the whole file ------------------------------------------
@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (BHS + b"BTS|0\r", "batch 1 has BHS but no MSH"),
        (BHS, "batch 1 has BHS but no MSH"),
        (BHS + b"BTS\r" + BHS + M1 + b"BTS\r", "batch 1 has BHS but no MSH"),
        (BHS + M1 + BHS + M2 + b"BTS\r", "nested BHS"),
        (b"FHS|^~\\&\rFHS|^~\\&\r" + BHS + M1 + b"BTS\rFTS\r", "nested FHS"),
        (BHS + M1 + b"FHS|^~\\&\r", "FHS must be the first segment"),
        (M1 + b"BTS|1\r", "BTS without BHS"),
        (BHS + M1 + b"BTS\rFTS|1\r", "FTS without FHS"),
        (b"FHS|^~\\&\r" + BHS + M1 + b"FTS|1\r", "FTS inside batch 1"),
        (b"EVN|A01\r" + M1, "segment EVN before the first MSH"),
        (b"FHS|^~\\&\r" + M1 + b"FTS\r", "MSH outside a BHS/BTS batch"),
        (BHS + M1 + b"BTS\r" + M2, "MSH outside a BHS/BTS batch"),
        (BHS + M1 + b"BTS\rPID|1\r", "segment PID outside a message"),
        (M1 + BHS + M2 + b"BTS\r", "BHS after messages outside a batch"),
        (BHS + M1, "batch 1 has no BTS"),
        (b"FHS|^~\\&\r" + BHS + M1 + b"BTS\r", "FHS without FTS"),
        (b"FHS|^~\\&\r" + BHS + M1 + b"BTS\rFTS\r" + M2, "after FTS"),
        (b"BHS\r" + M1 + b"BTS\r", "BHS has no usable field separator"),
        (b"", "no MSH segment"),
        (b"\n# only a comment\n\n", "no MSH segment"),
    ],
)
def test_malformed_file_rejected(data, reason):
    assert reason in reject_reason(data)


def test_reason_names_line_and_never_content():
    reason = reject_reason(b"PID|1||SECRET^NAME\r" + M1)
    assert reason.startswith("line 1: segment PID") and "SECRET" not in reason


# case 60: headerless files -----------------------------------------------------------------
def test_headerless_cr_file():
    assert split_file(M1 + M2) == Batch((M1, M2))


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_headerless_lf_and_crlf(eol):
    data = (M1 + M2).replace(b"\r", eol)
    assert split_file(data).messages == (M1, M2)


def test_headerless_blank_lines_comments_bom_and_mllp_bytes():
    data = (
        b"\xef\xbb\xbf\n\n  \n# exported by the lab system\n"
        + b"\x0b" + M1.replace(b"\r", b"\n") + b"\x1c\r\n"
        + b"# next one\n\n"
        + b"\x0b" + M2 + b"\x1c\r"
    )  # fmt: skip
    assert split_file(data).messages == (M1, M2)


def test_mllp_end_block_without_final_cr():
    data = b"\x0b" + M1[:-1] + b"\x1c\r\x0b" + M2 + b"\x1c\r"
    assert split_file(data).messages == (M1, M2)


def test_vertical_tab_and_file_separator_inside_lines_are_not_line_breaks():
    # str.splitlines() would split on 0x0B / 0x1C / 0x85: segments split on CR/LF only.
    msg = b"MSH|^~\\&|SND|SF|RCV|RF|20240101||ADT^A01|C9|P|2.5\rOBX|1|ST|X||a\x0bb\x85c\r"
    assert split_file(msg).messages == (msg,)


# case 61: batch ACK ------------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    assert text.endswith("\r") and "\n" not in text
    return text.split("\r")[:-1]


def test_zero_ack_batch_means_all_accepted():
    batch = split_file(sample("batch_bhs_bts_python-hl7.hl7"))
    results = [assess(m, LISTENER) for m in batch.messages]
    lines = _lines(file_ack(batch, results, NOW))
    assert len(lines) == 2
    bhs = lines[0].split("|")
    assert bhs[:7] == ["BHS", "^~\\&", "", "AUSDHSV", "", "ABCHS", "20240101120001+0000"]
    assert bhs[10] != "" and bhs[11] == "abchs20070101123401-1"  # BHS-11 new, BHS-12 inbound
    assert len(bhs) == 12
    assert lines[1] == "BTS|0"


def test_batch_ack_lists_messages_not_accepted():
    listener = LISTENER.replace(versions=["2.5"])
    bad = M2.replace(b"|P|2.5", b"|P|2.3")
    results = [assess(m, listener) for m in (M1, bad, M1)]
    lines = _lines(batch_ack(BHS, results, NOW))
    assert lines[0].split("|")[2:7] == ["RCV", "RF", "SND", "SF", "20240101120001+0000"]
    assert lines[0].split("|")[11] == "B1"
    assert [x for x in lines if x[:3] in ("MSH", "MSA")] == [
        lines[1],
        "MSA|AR|C2|Unsupported version id",
    ]
    assert lines[1].startswith("MSH|^~\\&|RCV|RF|SND|SF|20240101120001+0000||ACK^A08|")
    assert lines[-1] == "BTS|1"


def test_batch_ack_for_message_without_usable_msh():
    result = SimpleNamespace(header=None, code=None, errors=[], reason="MSH has 5 fields")
    lines = _lines(batch_ack(BHS.decode(), [result], NOW))
    assert lines[1].startswith("MSH|^~\\&|RCV|RF|SND|SF|")
    assert lines[2] == "MSA|AR||MSH has 5 fields"
    assert lines[3] == "BTS|1"


def test_file_ack_wraps_batches_and_counts_them():
    batch = split_file(sample("file_fhs_bhs_bts_fts_python-hl7.hl7"))
    results = [assess(m, LISTENER.replace(versions=["2.4"])) for m in batch.messages]
    lines = _lines(file_ack(batch, results, NOW))
    assert [x.split("|")[0] for x in lines if x[:3] not in ("MSH", "MSA", "ERR")] == [
        "FHS", "BHS", "BTS", "BHS", "BTS", "FTS",
    ]  # fmt: skip
    assert [x for x in lines if x[:3] in ("BTS", "FTS")] == ["BTS|2", "BTS|1", "FTS|2"]
    bhs = [x.split("|") for x in lines if x.startswith("BHS")]
    assert [b[11] for b in bhs] == ["abchs20070101123401-1", "abchs20070101123401-2"]
    msa = [x for x in lines if x.startswith("MSA")]
    assert msa == ["MSA|AR|12334456778890", "MSA|AR|12334456778891", "MSA|AR|12334456778890"]


def test_headerless_file_has_no_batch_ack():
    batch = split_file(M1 + M2)
    assert file_ack(batch, [assess(m, LISTENER) for m in batch.messages], NOW) is None
