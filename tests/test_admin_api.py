"""The admin JSON API on a real engine (127.0.0.1, port 0) with treq as the client."""

from __future__ import annotations

import json
import socket
import time

import pytest
import pytest_twisted
import treq
from sqlalchemy import insert

from engine.admin import search
from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.schema import messages

from .engine_harness import in_thread, send_all, start_engine, statuses
from .peers import wait_for

TOKEN = "secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1", ack: after_routing}
routes:
  - {match: {type: ADT}, to: [adt, lab]}
store_options: {poll_interval: 50ms}
admin: {listen: "tcp:0:interface=127.0.0.1", token: secret}
"""


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def adt(n: int, patient: str) -> bytes:
    return (f"MSH|^~\\&|REG|H|X|H|2024||ADT^A01|CTL{n}|P|2.5\r"
            f"PID|1||{patient}^^^H^MR||DOE^JANE\r").encode()  # fmt: skip


@pytest.fixture
def sb(tmp_path, store_url):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        "name: adt\ndestinations:\n"
        f"  - name: ehr\n    mllp: 'tcp:127.0.0.1:{closed_port()}'\n    ack_timeout: 1s\n"
        "    retry: {max_attempts: 1}\n"
    )
    (tmp_path / "channels" / "lab.yaml").write_text(
        "name: lab\nsteps: [{filter: {field: MSH-4, equals: NOPE}}]\n"
    )
    engine = start_engine(tmp_path, CONFIG, channels=(), store=store_url)
    yield engine
    pytest_twisted.blockon(engine.stopService())


class Client:
    def __init__(self, sb, headers=AUTH):
        self.base = f"http://127.0.0.1:{sb.port_of('admin')}/api"
        self.headers = headers

    async def get(self, path, expect=200):
        resp = await treq.get(self.base + path, headers=self.headers)
        body = await resp.json()
        assert resp.code == expect, (path, resp.code, body)
        return body

    async def post(self, path, body=None, expect=200):
        data = json.dumps(body).encode() if body is not None else b""
        resp = await treq.post(self.base + path, data=data, headers=self.headers)
        out = await resp.json()
        assert resp.code == expect, (path, resp.code, out)
        return out


@pytest_twisted.ensureDeferred
async def test_token_required_and_json_errors(sb):
    base = f"http://127.0.0.1:{sb.port_of('admin')}/api"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in (("GET", "/status"), ("GET", "/messages"), ("POST", "/reload"),
                             ("POST", "/queues/adt/ehr/pause"), ("GET", "/nope")):  # fmt: skip
            resp = await treq.request(method, base + path, headers=headers)
            assert resp.code == 401, (method, path, headers)
            assert resp.headers.getRawHeaders("www-authenticate") == ["Bearer"]
            assert "error" in await resp.json()
    c = Client(sb)
    assert (await c.get("/nope", expect=404))["error"]
    assert (await c.post("/status", expect=405))["error"]
    assert (await c.get("/messages/abc", expect=400))["error"]
    assert (await c.get("/messages/999", expect=404))["error"]
    assert (await c.get("/messages?since=yesterday", expect=400))["error"]
    assert (await c.post("/replay", {"status": "dead"}, expect=400))["error"]
    assert (await c.post("/queues/adt/nope/pause", expect=404))["error"]
    resp = await treq.post(c.base + "/replay", data=b"{not json", headers=AUTH)
    assert resp.code == 400 and (await resp.json())["error"]
    # one reload endpoint, POST /api/reload (audited): the unaudited /reload is gone
    for headers in ({}, AUTH):
        resp = await treq.post(base.removesuffix("/api") + "/reload", headers=headers)
        assert resp.code == 404
        await resp.content()
    # nothing was done, so nothing was audited
    assert (await c.get("/audit"))["entries"] == []


def test_one_bearer_check_guards_the_admin_listener():
    """One authorized() (constant time), and the only resource that needs it uses it."""
    from pathlib import Path

    from engine.admin import api

    engine_dir = Path(api.__file__).resolve().parents[1]
    defined = [p.relative_to(engine_dir).as_posix() for p in engine_dir.rglob("*.py")
               if "def authorized(" in p.read_text()]  # fmt: skip
    assert defined == ["admin/api.py"]
    source = Path(api.__file__).read_text()
    assert "hmac.compare_digest(" in source and "if not authorized(request, self.token)" in source


@pytest_twisted.ensureDeferred
async def test_status_search_detail_and_actions_end_to_end(sb):
    c = Client(sb)
    acks = await in_thread(send_all, sb.port_of("in"), [adt(1, "P100"), adt(2, "P200")])
    assert all(b"MSA|AA|" in a for a in acks)
    assert await wait_for(lambda: statuses(sb) == ["dead", "dead"])

    status = await c.get("/status")
    (listener,) = status["listeners"]
    assert listener["name"] == "in" and listener["kind"] == "mllp" and listener["running"]
    assert listener["ack"] == "after_routing" and listener["port"] == sb.port_of("in")
    assert status["channels"] == [
        {"name": "adt", "destinations": [{"name": "ehr", "kind": "mllp"}]},
        {"name": "lab", "destinations": []},
    ]
    (dest,) = status["destinations"]
    assert dest["channel"] == "adt" and dest["destination"] == "ehr"
    assert dest["depth"] == {"dead": 2} and dest["paused"] is False
    assert dest["health"] in ("healthy", "degraded", "down")

    (queue,) = (await c.get("/queues"))["queues"]
    assert queue["dead"] == 2
    head = (await c.get("/queues/adt/ehr"))["head"]
    assert [h["status"] for h in head] == ["dead", "dead"]
    assert (await c.get("/queues/adt/none", expect=404))["error"]

    found = (await c.get("/messages?control_id=CTL2"))["messages"]
    assert [m["control_id"] for m in found] == ["CTL2"] and "raw" not in found[0]
    found = (await c.get("/messages?patient_id=P100"))["messages"]
    assert [(m["control_id"], m["patient_id"]) for m in found] == [("CTL1", "P100")]
    everything = (await c.get("/messages?type=ADT^A01&status=routed&listener=in"))["messages"]
    assert [m["control_id"] for m in everything] == ["CTL2", "CTL1"]  # newest first
    assert (await c.get("/messages?type=ORU"))["messages"] == []
    assert (await c.get(f"/messages?until={time.time() - 3600}"))["messages"] == []
    assert len((await c.get("/messages?since=2000-01-01T00:00:00Z&limit=1"))["messages"]) == 1

    mid = found[0]["id"]
    detail = await c.get(f"/messages/{mid}")
    assert detail["raw"].startswith("MSH|^~\\&|REG|") and "P100" in detail["raw"]
    assert "MSA|AA|CTL1" in detail["ack"] and detail["status"] == "routed"
    runs = {r["channel"]: r for r in detail["channel_runs"]}
    assert runs["lab"]["status"] == "filtered" and runs["lab"]["step"] == 1
    assert runs["lab"]["step_kind"] == "filter" and "reason" in runs["lab"]
    assert runs["adt"]["status"] == "passed" and runs["adt"]["implied"] is True
    (delivery,) = detail["deliveries"]
    assert delivery["destination"] == "ehr" and delivery["status"] == "dead"
    assert delivery["attempts"] == 1 and delivery["last_error"]
    assert delivery["payload"].startswith("MSH|")
    did = delivery["id"]

    # pause, then replay one dead delivery: pending behind the pause; skip it; resume
    assert (await c.post("/queues/adt/ehr/pause"))["paused"] is True
    assert (await c.get("/status"))["destinations"][0]["paused"] is True
    worker = sb.delivery.workers[("adt", "ehr")]
    assert await wait_for(lambda: worker.paused)  # seen at the worker's next poll
    assert (await c.post("/replay", {"ids": [did]}))["replayed"] == 1
    assert statuses(sb)[0] == "pending"
    assert (await c.post("/queues/adt/ehr/skip"))["skipped"] == did
    assert statuses(sb) == ["skipped", "dead"]
    assert (await c.post("/queues/adt/ehr/skip", expect=404))["error"]  # nothing open
    # the message's skipped delivery back to pending (still paused: it waits)
    replayed = await c.post(f"/messages/{mid}/replay")
    assert replayed == {"message_id": mid, "replayed": 1, "deliveries": [did]}
    assert statuses(sb) == ["pending", "dead"]
    assert (await c.post("/queues/adt/ehr/resume"))["paused"] is False
    assert await wait_for(lambda: statuses(sb) == ["dead", "dead"])  # peer still down
    # every dead delivery of the destination at once
    assert (await c.post("/replay", {"channel": "adt", "destination": "ehr"}))["replayed"] == 2
    assert await wait_for(lambda: statuses(sb) == ["dead", "dead"])

    # an edited body runs through the listener's intake as a new message
    edited = detail["raw"].replace("P100", "P101").replace("CTL1", "CTL1E")
    out = await c.post(f"/messages/{mid}/replay", {"body": edited.replace("\r", "\n")})
    assert out["ack_code"] == "AA" and "MSA|AA|CTL1E" in out["ack"]
    new = await c.get(f"/messages/{out['new_message_id']}")
    assert new["peer"] == f"replay:{mid}" and new["patient_id"] == "P101"
    assert new["control_id"] == "CTL1E" and "\r" in new["raw"]
    assert (await c.post(f"/messages/{mid}/replay", {"body": "junk"}, expect=400))["error"]

    # every dead delivery of every destination ({"all": true}, as `queue replay --all`)
    assert await wait_for(lambda: statuses(sb) == ["dead"] * 3)  # the edited one's too
    assert (await c.post("/replay", {"all": True}))["replayed"] == 3
    assert await wait_for(lambda: statuses(sb) == ["dead"] * 3)
    assert (await c.post("/replay", {"destination": "ehr", "all": True}, expect=400))["error"]

    reload = await c.post("/reload")
    assert reload["ok"] is True

    entries = (await c.get("/audit?limit=50"))["entries"]
    got = [(e["action"], e["target"], e["actor"]) for e in reversed(entries)]
    assert got == [
        ("pause", "adt/ehr", "token"),
        ("replay", f"deliveries {did}", "token"),
        ("skip", "adt/ehr", "token"),
        ("replay", f"message {mid}", "token"),
        ("resume", "adt/ehr", "token"),
        ("replay", "adt/ehr", "token"),
        ("replay-edited", f"message {mid}", "token"),
        ("replay", "all", "token"),
        ("reload", "config", "token"),
    ]
    assert all(e["source"].startswith("127.0.0.1:") for e in entries)
    assert entries[1]["detail"] == {"replayed": 3, "status": "dead"}
    assert entries[2]["detail"]["new_message"] == out["new_message_id"]
    assert entries[3]["detail"] == {"replayed": 2, "status": "dead"}
    assert not any("P10" in json.dumps(e) for e in entries)  # no message content


@pytest_twisted.ensureDeferred
async def test_pause_and_resume_reach_the_worker_at_once(tmp_path, store_url):
    """Workers that look at the store every 10 minutes: a pause or a resume through the API
    takes effect in the worker at once, as the API wakes it (a change made in the store
    alone would wait for the next look)."""
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        f"name: adt\ndestinations:\n  - {{name: out, file: {tmp_path / 'out'}}}\n"
    )
    config = CONFIG.replace("{poll_interval: 50ms}", "{poll_interval: 10m, lease_ttl: 1h}")
    config = config.replace("to: [adt, lab]", "to: [adt]")
    sb = start_engine(tmp_path, config, channels=(), store=store_url)
    try:
        c = Client(sb)
        worker = sb.delivery.workers[("adt", "out")]
        assert await wait_for(lambda: worker.holder)
        assert (await c.post("/queues/adt/out/pause"))["paused"] is True
        assert await wait_for(lambda: worker.paused, timeout=5)
        acks = await in_thread(send_all, sb.port_of("in"), [adt(1, "P1")])
        assert b"MSA|AA|" in acks[0]
        assert statuses(sb) == ["pending"]  # kept back by the pause
        assert (await c.post("/queues/adt/out/resume"))["paused"] is False
        assert await wait_for(lambda: statuses(sb) == ["delivered"], timeout=5)
        assert not worker.paused and len(list((tmp_path / "out").iterdir())) == 1
        entries = (await c.get("/audit"))["entries"]
        assert [(e["action"], e["target"], e["detail"]) for e in reversed(entries)] == [
            ("pause", "adt/out", {"paused": True}), ("resume", "adt/out", {"paused": False})
        ]  # fmt: skip
    finally:
        await sb.stopService()


def test_search_uses_the_indexes(tmp_path):
    """200,000 rows on SQLite: patient and control id searches are index lookups."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'big.db'}")
    migrations.upgrade(engine)
    base = 1_700_000_000.0
    rows = [
        {"received_at": base + i, "listener": "in", "control_id": f"C{i}", "message_type": "ADT",
         "trigger": "A01", "status": "routed", "size": 10, "raw": b"MSH|",
         "patient_id": f"P{i % 50_000}"}
        for i in range(200_000)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(messages), rows)

    plan = " | ".join(search.explain(engine, search.Search(patient_id="P7")))
    assert "ix_messages_patient" in plan and "SCAN" not in plan.replace("SCAN CONSTANT", "")
    plan = " | ".join(search.explain(engine, search.Search(control_id="C123")))
    assert "ix_messages_control_id" in plan
    plan = " | ".join(search.explain(engine, search.Search(since=base + 10)))
    assert "ix_messages_received_at" in plan

    found = search.search_messages(engine, search.Search(patient_id="P7"))
    assert [r["control_id"] for r in found] == ["C150007", "C100007", "C50007", "C7"]
    found = search.search_messages(
        engine, search.Search(patient_id="P7", since=base + 7, until=base + 100_007, limit=1)
    )
    assert [r["control_id"] for r in found] == ["C50007"]
    assert search.parse_time("2023-11-14T22:13:20Z") == base
    assert search.parse_time(str(base)) == base
    engine.dispose()
