"""CPU per message to build the FHIR R4 transaction Bundle (no I/O, no validation).

    .venv/bin/python bench/fhir_convert.py [--runs 2000]

ORU^R01 with 20 OBX (target: at most 1 ms of CPU per message), an ADT^A01 and an ORM^O01;
also the JSON encoding, and fhir.resources validation for scale (not on the hot path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.fhir.convert import convert, validate
from engine.fhir.options import ConvertOptions
from engine.hl7.message import Message

HEAD = "MSH|^~\\&|LAB|GHH|EHR|GHH|20261121093500||{type}|BENCH1|P|2.5.1\r"
PID = ("PID|1||555-44-4444^^^GHH&2.16.840.1.113883.19.5&ISO^MR~123-45-6789^^^SSA^SS||"
       "DOE^JANE^Q^^^^L||19700101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA^H||"
       "^PRN^PH^^1^217^5550100|^WPN^PH^^1^217^5550199|ENG|M\r")  # fmt: skip
PV1 = ("PV1|1|I|4EAST^412^B^GHH||||1234^WELBY^MARCUS^A^^DR^MD^^GHH|2345^KILDARE^JAMES|||"
       "MED|||||||||V1000^^^GHH^VN|||||||||||||||||||||||||20261121080000\r")  # fmt: skip
CODES = [("2345-7", "Glucose", "mg/dL", "70-105", "182", "H"), ("2951-2", "Sodium", "mmol/L",
         "135-145", "139", "N"), ("2823-3", "Potassium", "mmol/L", "3.5-5.1", "4.2", "N"),
         ("2075-0", "Chloride", "mmol/L", "98-107", "101", "N")]  # fmt: skip


def oru(n_obx: int = 20) -> bytes:
    obx = "".join(
        f"OBX|{i}|NM|{c[0]}^{c[1]}^LN^L{i}^{c[1]}^L||{c[4]}|{c[2]}^{c[2]}^UCUM|{c[3]}|{c[5]}|||F"
        f"|||20261121090000-0500\r"
        for i, c in ((i, CODES[i % len(CODES)]) for i in range(1, n_obx + 1))
    )
    return (HEAD.format(type="ORU^R01^ORU_R01") + PID + PV1 + "ORC|RE|P100|F200\r"
            "OBR|1|P100|F200|80048^Basic metabolic panel^C4|||20261121083000-0500|||||||||"
            "1234^WELBY^MARCUS||||||20261121093000-0500|||F\r" + obx).encode()  # fmt: skip


def adt() -> bytes:
    return (HEAD.format(type="ADT^A01^ADT_A01") + "EVN|A01|20261121080000\r" + PID + PV1
            + "NK1|1|DOE^JOHN|SPO^Spouse^HL70063|1 MAIN ST^^SPRINGFIELD^IL^62701\r"
            "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r"
            "DG1|1||R07.9^Chest pain, unspecified^I10|||A\r").encode()  # fmt: skip


def orm() -> bytes:
    return (HEAD.format(type="ORM^O01^ORM_O01") + PID + PV1
            + "ORC|NW|P300||||||||||1234^WELBY^MARCUS\r"
            "OBR|1|P300||71046^Chest X-ray 2 views^C4|R|20261121100000\r").encode()  # fmt: skip


def cpu_us(fn, runs: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(runs):
        fn()
    return (time.process_time() - start) / runs * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000)
    args = ap.parse_args()
    opts = ConvertOptions(timezone=ZoneInfo("America/Chicago"))
    print(f"FHIR R4 transaction Bundle, CPU per message ({args.runs:,} runs each)")
    print(
        f"{'message':22} {'resources':>9} {'convert µs':>11} {'+ JSON µs':>10} {'validate µs':>12}"
    )
    results = {}
    for name, payload in (("ORU^R01 (20 OBX)", oru()), ("ADT^A01", adt()), ("ORM^O01", orm())):
        bundle = convert(Message.from_bytes(payload), opts)
        validate(bundle)  # it must be valid R4
        conv = cpu_us(lambda p=payload: convert(Message.from_bytes(p), opts), args.runs)
        enc = cpu_us(lambda b=bundle: json.dumps(b, separators=(",", ":")), args.runs)
        val = cpu_us(lambda b=bundle: validate(b), max(20, args.runs // 20))
        results[name] = conv
        print(f"{name:22} {len(bundle['entry']):>9} {conv:>11.0f} {enc:>10.0f} {val:>12.0f}")
    oru_cost = results["ORU^R01 (20 OBX)"]
    print(
        f"target: ORU^R01 with 20 OBX at most 1 ms CPU: {oru_cost / 1000:.2f} ms, "
        f"{'met' if oru_cost <= 1000 else 'NOT MET'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
