"""Every channel test shipped in channels/ passes, and the shipped config builds."""

from __future__ import annotations

from pathlib import Path

from engine.config import load_config
from engine.pipeline import build_pipeline
from engine.testing import find_test_files, format_report, run_tests

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_builds():
    config = load_config(REPO / "routes.yaml")
    pipeline = build_pipeline(config)
    assert set(pipeline.channels) == {"lab-results", "orders", "adt-fanout"}


def test_every_channel_has_tests():
    names = {p.name.removesuffix("_test.yaml") for p in find_test_files([REPO / "channels"])}
    assert names == {"lab-results", "orders", "adt-fanout"}


def test_shipped_channel_tests_pass():
    report = run_tests([REPO / "channels"])
    assert report.ok, format_report(report)
    assert report.passed >= 12
