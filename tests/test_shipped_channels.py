"""Every channel test shipped in channels/ passes, and the shipped config builds."""

from __future__ import annotations

from pathlib import Path

from engine.components import load
from engine.context import Context
from engine.testing import find_test_files, format_report, run_tests

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_builds():
    _, pipeline = load(REPO / "routes.yaml", Context())
    assert set(pipeline.channels) == {"lab-results", "orders", "adt-fanout"}


def test_every_channel_has_tests():
    names = {p.name.removesuffix("_test.yaml") for p in find_test_files([REPO / "channels"])}
    assert names == {"lab-results", "orders", "adt-fanout"}


def test_shipped_channel_tests_pass():
    report = run_tests([REPO / "channels"])
    assert report.ok, format_report(report)
    assert report.passed >= 12


def test_json_schemas_accept_the_shipped_files_and_reject_typos(tmp_path):
    import json
    import subprocess
    import sys

    import jsonschema
    import yaml

    out = subprocess.run([sys.executable, "-m", "engine", "schema", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert out.returncode == 0, out.stderr
    schemas = {}
    for name in ("routes", "channel", "channel-test"):
        schemas[name] = json.loads((tmp_path / f"{name}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schemas[name])
    channel = jsonschema.Draft202012Validator(schemas["channel"])
    for path in (REPO / "channels").glob("*.yaml"):
        if not path.name.endswith("_test.yaml"):
            assert list(channel.iter_errors(yaml.safe_load(path.read_text()))) == [], path
    routes = jsonschema.Draft202012Validator(schemas["routes"])
    assert list(routes.iter_errors(yaml.safe_load((REPO / "routes.yaml").read_text()))) == []
    bad = {"name": "x", "steps": [{"translate": {"feild": "OBX-3", "table": "t"}}]}
    assert list(channel.iter_errors(bad))
