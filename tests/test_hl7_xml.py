"""HL7 v2.xml: the layout to_xml writes, exact round trips, and what from_xml accepts or refuses."""

from __future__ import annotations

import pytest
from lxml import etree

from engine.hl7.batch import split_file
from engine.hl7.message import Message
from engine.hl7.xml import NS, XmlError, from_xml, root_name, to_xml
from tests.conftest import SAMPLES

SAMPLE_FILES = sorted(SAMPLES.glob("*.hl7")) if SAMPLES.is_dir() else []
NO_SAMPLES = pytest.param(
    None, marks=pytest.mark.skip(reason=f"shared samples not found at {SAMPLES}")
)


def sample_messages() -> list:
    """Every message of every shared sample (batch and file samples split)."""
    out = []
    for path in SAMPLE_FILES:
        data = path.read_bytes()
        payloads = split_file(data).messages if data[:3] in (b"BHS", b"FHS") else (data,)
        for number, payload in enumerate(payloads, 1):
            out.append(pytest.param(payload, id=f"{path.stem}-{number}"))
    return out or [NO_SAMPLES]


def xml(text: str) -> str:
    return etree.tostring(to_xml(Message(text)), encoding="unicode")


def round_trip(text: str) -> str:
    return from_xml(to_xml(Message(text))).to_text()


def parse(body: str, root: str = "ADT_A01") -> Message:
    return from_xml(etree.fromstring(f'<{root} xmlns="{NS}">{body}</{root}>'))


MSH = "MSH|^~\\&|LAB||EHR|H|20240101||ORU^R01|C1|P|2.5"
MSH_XML = (
    "<MSH><MSH.1>|</MSH.1><MSH.2>^~\\&amp;</MSH.2><MSH.3>LAB</MSH.3><MSH.5>EHR</MSH.5>"
    "<MSH.6>H</MSH.6><MSH.7>20240101</MSH.7><MSH.9><MSH.9.1>ORU</MSH.9.1><MSH.9.2>R01"
    "</MSH.9.2></MSH.9><MSH.10>C1</MSH.10><MSH.11>P</MSH.11><MSH.12>2.5</MSH.12></MSH>"
)


# layout -----------------------------------------------------------------------------------
def test_layout_of_fields_components_subcomponents_repetitions_and_escapes():
    text = (
        f"{MSH}\rPID|1||123^^^H&1.2&ISO^MR~~456||doe^john\\S\\x^^^\\.br\\||F|\r"
        "NTE|1||C:\\temp\rZZZ\r"
    )
    assert xml(text) == (
        f'<ORU_R01 xmlns="{NS}">{MSH_XML}'
        "<PID><PID.1>1</PID.1>"
        "<PID.3><PID.3.1>123</PID.3.1><PID.3.4><PID.3.4.1>H</PID.3.4.1>"
        "<PID.3.4.2>1.2</PID.3.4.2><PID.3.4.3>ISO</PID.3.4.3></PID.3.4>"
        "<PID.3.5>MR</PID.3.5></PID.3><PID.3/><PID.3>456</PID.3>"
        "<PID.5><PID.5.1>doe</PID.5.1><PID.5.2>john^x</PID.5.2>"
        '<PID.5.5><escape V=".br"/></PID.5.5></PID.5>'
        "<PID.7>F</PID.7><PID.8/></PID>"
        '<NTE><NTE.1>1</NTE.1><NTE.3>C:<escape V="temp" unclosed="true"/></NTE.3></NTE>'
        "<ZZZ/></ORU_R01>"
    )
    assert round_trip(text) == text


@pytest.mark.parametrize(
    ("msh9", "name"),
    [
        ("ORU^R01^ORU_R01", "ORU_R01"),
        ("ADT^A04^ADT_A01", "ADT_A01"),
        ("ADT^A04", "ADT_A04"),
        ("ACK^", "ACK"),
        ("ACK", "ACK"),
        ("", "HL7"),
        ("A B^C", "HL7"),
    ],
)
def test_root_element_is_the_message_structure(msh9, name):
    message = Message(f"MSH|^~\\&|A|B|C|D|||{msh9}|1|P|2.5\r")
    assert root_name(message) == name
    assert to_xml(message).tag == f"{{{NS}}}{name}"


def test_custom_delimiters_are_decoded_and_msh1_msh2_kept_as_written():
    text = "MSH^~|\\&^A^B^^^^^ADT~A24^1^T^2.4\rPID^1^^11~~~FOO&&0363|22~N\\F\\Y\r"
    root = to_xml(Message(text))
    ns = {"h": NS}
    assert root.findtext("h:MSH/h:MSH.1", namespaces=ns) == "^"
    assert root.findtext("h:MSH/h:MSH.2", namespaces=ns) == "~|\\&"
    reps = root.findall("h:PID/h:PID.3", namespaces=ns)
    assert len(reps) == 2
    assert reps[0].findtext("h:PID.3.4/h:PID.3.4.3", namespaces=ns) == "0363"
    assert reps[1].findtext("h:PID.3.2", namespaces=ns) == "N^Y"  # \F\ is the field separator
    assert round_trip(text) == text


@pytest.mark.parametrize(
    "text",
    [
        f"{MSH}\rPID|||||\r",  # trailing empty fields
        f"{MSH}\rPID|1|\r",
        f"{MSH}\rPID\r",  # a segment without fields
        f"{MSH}\rPID|~X|A~|~|~~\r",  # empty repetitions
        f"{MSH}\rPID|^|A^|^B|&|A&|&B^|^&^\r",  # empty components and subcomponents
        f'{MSH}\rPID|""|A^""\r',  # HL7 null
        f"{MSH}\rOBX|1|FT|||a\\.br\\b\\H\\c\\N\\\\X0D\\\\Zabc\\\\\\d\\E\\e\\T\\\r",  # escapes
        f"{MSH}\rNTE|1||C:\\temp\\x\\y|\\\r",  # escape characters without their closing one
        f"{MSH}\rNTE|1|| spaces kept  |\t\r",
        "MSH|^~\\&\r",  # the shortest message
        "MSH|^~|A\r",  # MSH-2 with missing encoding characters
        "MSH|^~\\&#|A|B||||ADT^A01|1|P|2.7\rPID|1||a#b\r",  # v2.7 truncation character
        "MSH|^~\\}|A|B|||||ACK^|1|P|2.1||^\rMSA|AA|x}y\\T\\z\r",  # custom subcomponent '}'
        f"{MSH}\rPID|1||1\rMSH|^~\\&|X\r",  # a second MSH is a segment like MSH
        f"{MSH}\rNTE|1||caf\xe9 \u20ac\r",  # non-ASCII text
    ],
)
def test_round_trip_is_exact(text):
    assert round_trip(text) == text
    reparsed = from_xml(etree.fromstring(etree.tostring(to_xml(Message(text)))))
    assert reparsed.to_text() == text


@pytest.mark.parametrize("payload", sample_messages())
def test_round_trip_of_every_shared_sample(payload):
    message = Message.from_bytes(payload)
    back = from_xml(to_xml(message))
    assert back.to_text() == message.to_text()
    assert (back.sep, back.enc) == (message.sep, message.enc)
    serialized = etree.tostring(to_xml(message), encoding="utf-8")
    assert from_xml(etree.fromstring(serialized)).to_text() == message.to_text()


def test_control_characters_xml_cannot_hold_are_refused():
    with pytest.raises(XmlError, match=r"^segment 2 \('NTE'\): All strings must be XML"):
        to_xml(Message(f"{MSH}\rNTE|1||bell\x07\r"))


def test_a_segment_without_a_segment_id_is_refused():
    with pytest.raises(XmlError, match=r"^segment 2 \('pid'\): 'pid\|1' does not start"):
        to_xml(Message(f"{MSH}\rpid|1\r"))


# what from_xml reads ----------------------------------------------------------------------
MSH_IN = "<MSH><MSH.1>|</MSH.1><MSH.2>^~\\&amp;</MSH.2><MSH.9>ADT</MSH.9></MSH>"


def test_text_is_escaped_with_the_delimiters_of_the_result():
    message = parse(MSH_IN + "<PID><PID.5><PID.5.1>O|Brien^&amp;~\\</PID.5.1></PID.5></PID>")
    assert message.segments[1] == "PID|||||O\\F\\Brien\\S\\\\T\\\\R\\\\E\\"
    assert message.get("PID-5.1") == "O|Brien^&~\\"


def test_carriage_return_in_text_becomes_x0d():
    root = etree.fromstring(f'<ADT_A01 xmlns="{NS}">{MSH_IN}<NTE><NTE.3/></NTE></ADT_A01>')
    root[1][0].text = "a\rb"
    assert from_xml(root).segments[1] == "NTE|||a\\X0D\\b"


def test_groups_datatype_names_whitespace_and_comments_are_accepted():
    message = parse(
        f"""
        {MSH_IN}
        <!-- a comment -->
        <ORU_R01.PATIENT_RESULT>
          <ORU_R01.PATIENT>
            <PID>
              <PID.3>
                <CX.1>123</CX.1>
                <CX.4><HD.1>H</HD.1><HD.2>1.2</HD.2></CX.4>
              </PID.3>
              <PID.3>  456  </PID.3>
            </PID>
          </ORU_R01.PATIENT>
          <OBX><OBX.5>a<escape V=".br"/>b</OBX.5></OBX>
        </ORU_R01.PATIENT_RESULT>
        """
    )
    assert message.segments[1:] == ["PID|||123^^^H&1.2~  456  ", "OBX|||||a\\.br\\b"]


def test_fields_may_come_in_any_order_and_repetitions_are_gathered():
    message = parse(MSH_IN + "<PID><PID.3>A</PID.3><PID.1>1</PID.1><PID.3>B</PID.3></PID>")
    assert message.segments[1] == "PID|1||A~B"


@pytest.mark.parametrize(
    ("body", "root", "error"),
    [
        (MSH_IN, None, f"the root element <x> is not in the namespace {NS}"),
        ("<PID/>" + MSH_IN, "", "the first segment is not MSH"),
        ("", "", "the first segment is not MSH"),
        ("<MSH><MSH.2>^~\\&amp;</MSH.2></MSH>", "", "MSH.1 must be one character, got ''"),
        ("<MSH><MSH.1>||</MSH.1></MSH>", "", "MSH.1 must be one character, got '||'"),
        ("<MSH><MSH.1>|</MSH.1><MSH.2><x/></MSH.2></MSH>", "", "<MSH.2> must hold plain text"),
        (MSH_IN + "<PID><PID.3>a<PID.3.1>b</PID.3.1></PID.3></PID>", "",
         "unexpected text 'a' in <PID.3>"),
        (MSH_IN + "<PID><PID.3><PID.3.1/><PID.3.1/></PID.3></PID>", "",
         "<PID.3.1> appears twice in <PID.3>"),
        (MSH_IN + "<PID><PID.3><PID.3.x/></PID.3></PID>", "",
         "element <PID.3.x> in <PID.3> is not numbered (X.n)"),
        (MSH_IN + "<PID><PV1.3/></PID>", "", "element <PV1.3> in <PID> is not one of its fields"),
        (MSH_IN + "<PID><PID.0/></PID>", "", "element <PID.0> in <PID> is not one of its fields"),
        (MSH_IN + "<PID>text</PID>", "", "unexpected text 'text' in <PID>"),
        (MSH_IN + "<patient/>", "", "<patient> is neither a segment nor a group of segments"),
        (MSH_IN + '<PID xmlns=""/>', "", "element <PID> is not in the namespace " + NS),
        (MSH_IN + "<PID><PID.3><PID.3.1><PID.3.1.1><a.1/></PID.3.1.1></PID.3.1></PID.3></PID>",
         "", "<PID.3.1.1> nests deeper than subcomponents"),
        (MSH_IN + "<PID><PID.3><PID.3.1/><escape V='H'/></PID.3></PID>", "",
         "<PID.3> mixes components and escapes"),
        (MSH_IN + "<PID><PID.3><escape/></PID.3></PID>", "", "<escape> without V in <PID.3>"),
    ],
)  # fmt: skip
def test_what_is_not_an_hl7_xml_message(body, root, error):
    if root is None:
        doc = etree.fromstring(f"<x>{body}</x>")
    else:
        doc = etree.fromstring(f'<ADT_A01 xmlns="{NS}">{body}</ADT_A01>')
    with pytest.raises(XmlError) as caught:
        from_xml(doc)
    assert str(caught.value) == error


def test_from_xml_takes_an_element_tree_too():
    tree = etree.ElementTree(to_xml(Message(MSH + "\r")))
    assert from_xml(tree).to_text() == MSH + "\r"
