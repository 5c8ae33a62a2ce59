"""The xslt step: config through the real loader, build errors with file:line:column, and
messages through Channel.run (changed, unchanged, failed)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from engine.channel import ERRORED, PASSED
from engine.components import load
from engine.config import ConfigError
from engine.context import Context
from engine.hl7.message import Message
from tests.conftest import REPO, SAMPLES

SAMPLE_FILES = [
    p for p in (sorted(SAMPLES.glob("*.hl7")) if SAMPLES.is_dir() else [])
    if not p.name.startswith(("batch", "file"))
]  # fmt: skip

HEAD = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:hl7="urn:hl7-org:v2xml" exclude-result-prefixes="hl7">"""
IDENTITY = """
  <xsl:template match="@*|node()">
    <xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy>
  </xsl:template>"""

ADT = (
    "MSH|^~\\&|REG|HOSP|EHR|HOSP|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5\r"
    "EVN|A01|20240101120000\r"
    "PID|1||123^^^HOSP^MR||doe&van^john^^^dr~smith^anne||19800101|F|||\r"
    "PV1|1|I\r"
)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # paths in messages are shown relative to here
    return tmp_path


def stylesheet(name: str, body: str) -> None:
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    head = HEAD
    if "exsl:" in body:
        exsl = ' xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl">'
        head = head[:-1] + exsl
    Path(name).write_text(f"{head}\n{textwrap.dedent(body).strip()}\n</xsl:stylesheet>\n")


def channel(steps: str):
    """Build channel x with `steps` (YAML list items) through engine.components.load."""
    Path("routes.yaml").write_text("routes: []\n")
    Path("channels").mkdir(exist_ok=True)
    items = textwrap.indent(textwrap.dedent(steps), "  ")
    Path("channels/x.yaml").write_text("name: x\nsteps:\n" + items)
    return load("routes.yaml", Context())[1].channels["x"]


def config_errors(steps: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        channel(steps)
    return caught.value.format().splitlines()[:-1]


# end to end -------------------------------------------------------------------------------
def test_example_stylesheet_upper_cases_family_names_and_nothing_else(tmp_path):
    target = tmp_path / "transforms" / "xslt" / "example.xsl"
    target.parent.mkdir(parents=True)
    shutil.copy(REPO / "transforms" / "xslt" / "example.xsl", target)
    ch = channel("  - xslt: ../transforms/xslt/example.xsl\n")
    message = Message.from_bytes(ADT.encode())
    result = ch.run(message)
    assert result.status == PASSED
    out = result.message
    assert out.dirty
    assert out.to_text() == ADT.replace("doe&van^john", "DOE&van^john").replace(
        "smith^anne", "SMITH^anne"
    )
    assert out.get_all("PID-5[*].1") == ["DOE&van", "SMITH"]
    assert message.to_text() == ADT and not message.dirty  # the caller's copy is untouched


def test_a_stylesheet_setting_one_field_from_a_parameter():
    stylesheet(
        "xsl/receiver.xsl",
        f"""
        <xsl:param name="receiver" select="'NOBODY'"/>
        {IDENTITY}
        <xsl:template match="hl7:MSH/hl7:MSH.5">
          <MSH.5 xmlns="urn:hl7-org:v2xml"><xsl:value-of select="$receiver"/></MSH.5>
        </xsl:template>
        """,
    )
    ch = channel("  - xslt: {stylesheet: ../xsl/receiver.xsl, params: {receiver: 2.50|X}}\n")
    result = ch.run(Message(ADT))
    assert result.status == PASSED
    assert result.message.to_text() == ADT.replace("|EHR|", "|2.50\\F\\X|", 1)
    assert result.message.get("MSH-5") == "2.50|X"  # a text parameter, escaped on the way back

    default = channel("  - xslt: ../xsl/receiver.xsl\n").run(Message(ADT))
    assert default.message.get("MSH-5") == "NOBODY"


@pytest.mark.parametrize("path", SAMPLE_FILES or [None], ids=lambda p: p.stem if p else "none")
def test_identity_stylesheet_leaves_every_sample_unchanged(path):
    if path is None:
        pytest.skip(f"shared samples not found at {SAMPLES}")
    stylesheet("xsl/identity.xsl", IDENTITY)
    ch = channel("  - xslt: ../xsl/identity.xsl\n")
    payload = path.read_bytes()
    result = ch.run(Message.from_bytes(payload))
    assert result.status == PASSED, result.reason
    assert not result.message.dirty
    assert result.message.to_bytes() == payload


def test_a_stylesheet_that_rebuilds_the_same_message_does_not_mark_it_changed():
    stylesheet(
        "xsl/rebuild.xsl",
        """
        <xsl:template match="/"><xsl:apply-templates select="*"/></xsl:template>
        <xsl:template match="*">
          <xsl:element name="{local-name()}" namespace="urn:hl7-org:v2xml">
            <xsl:copy-of select="@*"/><xsl:apply-templates/>
          </xsl:element>
        </xsl:template>
        """,
    )
    result = channel("  - xslt: ../xsl/rebuild.xsl\n").run(Message(ADT))
    assert result.status == PASSED
    assert not result.message.dirty and result.message.to_text() == ADT


# failures on a message --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            """
            <xsl:template match="/">
              <xsl:if test="not(hl7:*/hl7:PV2)">
                <xsl:message terminate="yes">no PV2 segment</xsl:message>
              </xsl:if>
            </xsl:template>
            """,
            "stylesheet xsl/s.xsl failed: no PV2 segment",
        ),
        (
            '<xsl:output method="text"/><xsl:template match="/">text</xsl:template>',
            "stylesheet xsl/s.xsl produced no XML element (text output?)",
        ),
        (
            '<xsl:template match="/"><ADT_A01><MSH/></ADT_A01></xsl:template>',
            "stylesheet xsl/s.xsl did not produce an HL7 v2.xml message: the root element "
            "<ADT_A01> is not in the namespace urn:hl7-org:v2xml",
        ),
        (
            """
            <xsl:template match="/">
              <ADT_A01 xmlns="urn:hl7-org:v2xml"><xsl:copy-of select="*/hl7:PID"/></ADT_A01>
            </xsl:template>
            """,
            "stylesheet xsl/s.xsl did not produce an HL7 v2.xml message: "
            "the first segment is not MSH",
        ),
        (
            """
            <xsl:template match="/">
              <exsl:document href="out.txt">x</exsl:document>
              <xsl:copy-of select="."/>
            </xsl:template>
            """,
            "stylesheet xsl/s.xsl failed: line 4: runtime error, element 'document'; "
            "File write for out.txt refused; xsltDocumentElem: write rights for out.txt denied",
        ),
    ],
    ids=["terminate", "text-output", "no-namespace", "no-msh", "write-denied"],
)
def test_failures_end_the_run_as_errored_with_the_reason(body, reason):
    stylesheet("xsl/s.xsl", body)
    ch = channel("  - set: {PID-2: x}\n  - xslt: ../xsl/s.xsl\n")
    result = ch.run(Message(ADT))
    assert (result.status, result.step, result.step_kind) == (ERRORED, 2, "xslt")
    assert result.reason == reason
    assert result.errors == []
    assert not Path("out.txt").exists()


def test_a_message_xml_cannot_hold_fails_with_the_reason():
    stylesheet("xsl/identity.xsl", IDENTITY)
    result = channel("  - xslt: ../xsl/identity.xsl\n").run(Message(ADT + "NTE|1||\x01\r"))
    assert result.status == ERRORED
    assert result.reason == (
        "the message cannot be written as XML: segment 5 ('NTE'): All strings must be XML "
        "compatible: Unicode or ASCII, no NULL bytes or control characters"
    )


# config errors ----------------------------------------------------------------------------
def test_a_stylesheet_that_is_not_well_formed_is_a_config_error_with_lxml_line():
    Path("bad.xsl").write_text(
        f"{HEAD}\n  <xsl:template match='/'>\n    <a></b>\n</xsl:stylesheet>\n"
    )
    assert config_errors("  - set: {PID-2: x}\n  - xslt: ../bad.xsl\n") == [
        "channels/x.yaml:4:11: step 2 (xslt): stylesheet bad.xsl is not well-formed XML: "
        "Opening and ending tag mismatch: a line 4 and b, line 4, column 12"
    ]


def test_a_document_that_is_not_a_stylesheet_is_a_config_error():
    Path("page.xsl").write_text("<html>\n  <body/>\n</html>\n")
    assert config_errors("  - xslt: {stylesheet: ../page.xsl}\n") == [
        "channels/x.yaml:3:24: step 1 (xslt): stylesheet page.xsl is not a valid XSLT "
        "stylesheet: line 1: compilation error, element 'html'; "
        "xsltParseStylesheetProcess : document is not a stylesheet"
    ]


def test_an_invalid_xpath_is_a_config_error_with_its_line():
    stylesheet("xsl/xpath.xsl", '<xsl:template match="hl7:PID[">x</xsl:template>')
    assert config_errors("  - xslt: ../xsl/xpath.xsl\n") == [
        "channels/x.yaml:3:11: step 1 (xslt): stylesheet xsl/xpath.xsl is not a valid XSLT "
        "stylesheet: xsltCompileStepPattern : ']' expected; line 3: compilation error, element "
        "'template'; xsltCompilePattern : failed to compile 'hl7:PID['"
    ]


def test_option_errors_are_reported_by_the_loader():
    stylesheet("xsl/identity.xsl", IDENTITY)
    assert config_errors(
        """\
          - xslt: missing.xsl
          - xslt: {params: {a: b}}
          - xslt: {stylesheet: ../xsl/identity.xsl, params: {"not valid": 1, ok: [1]}}
          - xslt: {stylesheet: ../xsl/identity.xsl, param: {a: b}}
          - xslt: {stylesheet: ../xsl}
        """
    ) == [
        "channels/x.yaml:3:11: file not found for 'stylesheet': channels/missing.xsl",
        "channels/x.yaml:4:11: missing required key 'stylesheet' in step 2 (xslt)",
        "channels/x.yaml:5:54: invalid XSLT parameter name 'not valid' in 'params'",
        "channels/x.yaml:5:74: expected text for 'ok' in 'params', got list",
        "channels/x.yaml:6:45: unknown key 'param' in step 4 (xslt); did you mean 'params'?",
        "channels/x.yaml:7:24: expected a file for 'stylesheet', but xsl is a directory",
    ]
