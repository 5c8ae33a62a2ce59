"""How much of what the V2-to-FHIR guide maps we map, per message type, measured on our
samples with the checklist in tests/fhir_ig_checklist.py; every "mapped" claim is checked in
the converted bundle, and every valued field of a mapped segment must be in the checklist
(mapped, not mapped with a reason, or without a target in the guide).

    .venv/bin/python -m tests.test_fhir_ig_coverage      # the table, per message type
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.fhir.convert import convert, validate
from engine.fhir.options import ALL_RESOURCES, ConvertOptions
from engine.fhir.segments import Seg
from engine.hl7.message import Message

from .fhir_ig_checklist import CONDITIONS, MAPS, MESSAGES, OUTSIDE, M, N, sample_path

OPTS = ConvertOptions(resources=ALL_RESOURCES)  # MessageHeader too: it is opt-in
TARGET = 0.95


def values(node, path: list[str]) -> list:
    """The values at ``path`` under ``node`` (lists flattened; ``value`` matches any
    ``value[x]``; a key prefix such as ``collected`` matches ``collectedDateTime``)."""
    if not path:
        return [node]
    if isinstance(node, list):
        return [v for item in node for v in values(item, path)]
    if not isinstance(node, dict):
        return []
    head, rest = path[0], path[1:]
    if head in node:
        return values(node[head], rest)
    return [v for k, item in node.items() if k.startswith(head) and k[len(head):len(head) + 1]
            .isupper() for v in values(item, rest)]  # fmt: skip


def holds(check: str, bundle: dict) -> bool:
    """``Type.path[=value]`` on any resource of Type (``*``: any type; ``Bundle``: the
    bundle itself); ``a or b``: either."""
    if " or " in check:
        return any(holds(part, bundle) for part in check.split(" or "))
    spec, _, expected = check.partition("=")
    rtype, *path = spec.split(".")
    if rtype == "Bundle":
        found = values(bundle, path)
    else:
        found = [v for e in bundle["entry"] if rtype in ("*", e["resource"]["resourceType"])
                 for v in values(e["resource"], path)]  # fmt: skip
    found = [v for v in found if v not in (None, "", [], {})]
    return any(str(v) == expected for v in found) if expected else bool(found)


def _segment_maps(spec: dict, msg: Message, pos: int) -> list[str]:
    sid = msg.segments[pos][:3]
    if sid == "NTE":  # by what the note follows
        i = pos - 1
        while i > 0 and msg.segments[i][:3] in ("NTE", "PRT", "TQ1", "RXR"):
            i -= 1
        return spec.get(f"NTE@{msg.segments[i][:3]}", [])
    return spec.get(sid, [])


def facts(kind: str) -> tuple[dict, dict, list[str]]:
    """({(map, field): row} facts of the message type, the same for the maps we do not
    produce, and the problems found: unchecked claims, unclassified fields)."""
    names, spec = MESSAGES[kind]
    inside: dict = {}
    outside: dict = {}
    problems = []
    for name in names:
        msg = Message.from_bytes(sample_path(name).read_bytes())
        bundle = convert(msg, OPTS)
        validate(bundle)
        for pos in range(len(msg.segments)):
            seg = Seg(msg, pos)
            sid = msg.segments[pos][:3]
            for maps, into in ((_segment_maps(spec, msg, pos), inside),
                               (_OUTSIDE_MAPS.get(sid, []), outside)):  # fmt: skip
                for map_name in maps:
                    map_name, _, needs = map_name.partition("?")
                    if needs and not msg.segment_indexes(needs):
                        continue
                    table = MAPS.get(map_name) or OUTSIDE[map_name]
                    gate = CONDITIONS.get(map_name)
                    if gate and not gate(seg, msg):
                        continue
                    top = max(k for k in table if isinstance(k, int)) if len(table) > 1 else 0
                    for n in seg.valued():
                        row = table.get(n)
                        if row is None:
                            if n not in table["none"] and n <= max(top, max(table["none"])):
                                problems.append(f"{name}: {map_name} {sid}-{n} unclassified")
                            continue
                        if row.when is not None and not row.when(seg, msg):
                            continue
                        if isinstance(row, M) and not holds(row.check, bundle):
                            problems.append(f"{name}: {map_name} {sid}-{n}: {row.check} "
                                            "does not hold")  # fmt: skip
                        into[(map_name, f"{sid}-{n}")] = row
    return inside, outside, problems


_OUTSIDE_MAPS = {"PID": ["PID[Account]"], "PD1": ["PD1[Observation-LivingWill]"],
                 "PV1": ["PV1[Coverage]"], "IN3": ["IN3[CareTeam]"]}  # fmt: skip


def share(rows: dict) -> float:
    mapped = sum(1 for r in rows.values() if isinstance(r, M))
    return mapped / len(rows) if rows else 1.0


@pytest.mark.parametrize("kind", sorted(MESSAGES))
def test_ig_coverage(kind):
    inside, _, problems = facts(kind)
    assert problems == []
    assert share(inside) >= TARGET, [k for k, r in inside.items() if isinstance(r, N)]


def test_the_checker_can_fail():
    bundle = {"entry": [{"resource": {"resourceType": "Patient", "gender": "female",
                                      "name": [{"given": ["A"]}]}}]}  # fmt: skip
    assert holds("Patient.gender=female", bundle) and not holds("Patient.gender=male", bundle)
    assert holds("Patient.name.given", bundle) and not holds("Patient.telecom", bundle)
    assert not holds("Observation.code", bundle)


def details() -> str:
    """Per message type, the facts by segment map: the fields mapped, and those not."""
    lines = []
    for kind in MESSAGES:
        inside, outside, _ = facts(kind)
        lines.append(f"**{kind}**")
        by_map: dict = {}
        for (map_name, field), row in sorted(
            {**inside, **outside}.items(), key=lambda kv: (kv[0][0], int(kv[0][1][4:]))
        ):
            by_map.setdefault(map_name, ([], []))[isinstance(row, N)].append(field[4:])
        for map_name, (mapped, unmapped) in by_map.items():
            text = f"- {map_name}: mapped {' '.join(mapped) or '-'}"
            if unmapped:
                text += f"; not mapped {' '.join(unmapped)}"
            lines.append(text)
        lines.append("")
    return "\n".join(lines)


def report() -> str:
    lines = [
        "| type | IG facts | mapped | coverage | not mapped (why) | with maps we do not produce |",
        "|---|---|---|---|---|---|",
    ]
    for kind in MESSAGES:
        inside, outside, _ = facts(kind)
        both = {**inside, **outside}
        missing = "; ".join(f"{k[1]} ({r.reason})" for k, r in sorted(inside.items())
                            if isinstance(r, N)) or "-"  # fmt: skip
        mapped = sum(isinstance(r, M) for r in inside.values())
        lines.append(
            f"| {kind} | {len(inside)} | {mapped} | {share(inside):.1%} | {missing} | "
            f"{share(both):.1%} of {len(both)} |"
        )
    return "\n".join(lines)


def test_the_coverage_document_is_current():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "fhir-ig-coverage.md").read_text()
    assert report() in doc and details() in doc, "run: python -m tests.test_fhir_ig_coverage"


if __name__ == "__main__":
    print(report())
    print()
    print(details())
