"""A running engine converting to FHIR and delivering to a server started by the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest_twisted
from fhir.resources.bundle import Bundle
from sqlalchemy import select

from engine.mllp.client import BlockingMLLPClient
from engine.store.schema import deliveries

from .engine_harness import in_thread, start_engine
from .peers import wait_for
from .test_fhir_delivery import FhirServer, outcome, response, serve

REPO = Path(__file__).resolve().parents[1]

ORU = (
    "MSH|^~\\&|LAB|QUEST|EHR|GHH|20261121093500||ORU^R01|F1|P|2.5.1\r"
    "PID|1||555-44-4444^^^GHH^MR||DOE^JANE||19700101|F\r"
    "OBR|1|P1|F1|GLU^Glucose^L|||20261121083000\r"
    "OBX|1|NM|GLU^Glucose^L||182|mg/dL|70-105|H|||F\r"
)


def channel(url: str) -> str:
    return f"""name: lab
steps:
  - translate: {{field: "OBX[*]-3", table: lab-to-loinc, keep_original: true}}
destinations:
  - name: fhir
    fhir: {url}
    timezone: America/Chicago
    retry: {{max_attempts: 5, backoff: 50ms, max_backoff: 100ms}}
"""


@pytest_twisted.ensureDeferred
async def test_oru_to_fhir_server(tmp_path):
    server = FhirServer()
    port, url = await serve(server)
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "lab.yaml").write_text(channel(url))
    (tmp_path / "transforms" / "tables").mkdir(parents=True)
    (tmp_path / "transforms" / "tables" / "lab-to-loinc.csv").write_text(
        (REPO / "transforms" / "tables" / "lab-to-loinc.csv").read_text()
    )
    sb = start_engine(tmp_path, """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1"}
routes:
  - {match: {type: ORU}, to: [lab]}
store_options: {poll_interval: 50ms}
""", channels=())  # fmt: skip
    try:
        server.script.extend([
            (503, outcome("busy", ""), {"Retry-After": "0"}),
            (200, response("201 Created", "201 Created"), {}),
            (400, outcome("subject: unknown patient", "Observation.subject"), {}),
        ])  # fmt: skip

        def send():
            with BlockingMLLPClient("127.0.0.1", sb.port_of("in"), timeout=10) as c:
                return [c.send(ORU.encode()), c.send(ORU.replace("|F1|P|", "|F2|P|").encode())]

        await in_thread(send)
        assert await wait_for(lambda: len(server.seen) >= 3)
        bundle = server.seen[1]["body"]
        Bundle.parse_obj(bundle)  # valid FHIR R4
        assert bundle["type"] == "transaction"
        types = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert "Patient" in types and "Observation" in types and "DiagnosticReport" in types
        obs = next(e["resource"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Observation")  # fmt: skip
        codes = [(c.get("system"), c["code"]) for c in obs["code"]["coding"]]
        assert codes[0] == ("http://loinc.org", "2345-7")  # translated, the local code kept
        assert codes[1][1] == "GLU"
        assert obs["valueQuantity"]["value"] == 182
        assert obs["effectiveDateTime"].endswith("-06:00")  # the channel's zone (CST)

        def rows():
            with sb.store.engine.connect() as conn:
                q = select(deliveries.c.status, deliveries.c.last_error).order_by(deliveries.c.id)
                return conn.execute(q).all()

        assert await wait_for(lambda: [r.status for r in rows()] == ["delivered", "dead"])
        assert rows()[1].last_error == (
            "HTTP 400 Bad Request: error/invalid: subject: unknown patient at Observation.subject"
        )
    finally:
        await sb.stopService()
        await port.stopListening()


def test_convert_command(tmp_path):
    msg = tmp_path / "oru.hl7"
    msg.write_bytes(ORU.encode())
    out = subprocess.run([sys.executable, "-m", "engine", "convert", str(msg), "--timezone",
                          "America/New_York"], capture_output=True, text=True, timeout=60,
                         cwd=REPO)  # fmt: skip
    assert out.returncode == 0, out.stderr
    bundle = json.loads(out.stdout)
    Bundle.parse_obj(bundle)
    obs = next(e["resource"] for e in bundle["entry"]
               if e["resource"]["resourceType"] == "Observation")  # fmt: skip
    assert obs["effectiveDateTime"].endswith("-05:00")
    bad = tmp_path / "siu.hl7"
    bad.write_bytes(ORU.replace("ORU^R01", "ZZZ^Z01").encode())
    out = subprocess.run([sys.executable, "-m", "engine", "convert", str(bad)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert out.returncode == 1 and "no FHIR mapping for ZZZ^Z01" in out.stderr
