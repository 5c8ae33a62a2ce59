"""Build a pipeline from YAML text in a temporary directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

from engine.components import load
from engine.context import Context
from engine.hl7.message import Message
from engine.metrics import Metrics

ORU = (
    "MSH|^~\\&|LAB|QUEST|EPIC|HOSP|20240101||ORU^R01|C1|P|2.5\r"
    "PID|1||123^^^H^MR||DOE^JOHN\r"
    "PV1|1|I\r"
    "OBR|1|ORD1|FIL1|GLU^Glucose^L\r"
    "OBX|1|NM|GLU^Glucose^L||182|mg/dL|70-105|H\r"
    "OBX|2|NM|K^Potassium^L||4.1|mmol/L|3.5-5.1|N\r"
)


def write_channel(tmp_path: Path, channel: str, routes: str = "", **files: str) -> Path:
    (tmp_path / "channels").mkdir(exist_ok=True)
    (tmp_path / "channels" / "ch.yaml").write_text(textwrap.dedent(channel).lstrip())
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip())
    path = tmp_path / "routes.yaml"
    path.write_text(
        f"store: sqlite:///{tmp_path / 'db.sqlite'}\n"
        + (textwrap.dedent(routes) if routes else "routes:\n  - {match: {}, to: [ch]}\n")
    )
    return path


def pipeline(tmp_path: Path, channel: str, routes: str = "", **files: str):
    metrics = Metrics()
    _, built = load(write_channel(tmp_path, channel, routes, **files), Context(metrics=metrics))
    return built, metrics


def run(tmp_path: Path, channel: str, text: str = ORU, **files: str):
    p, _ = pipeline(tmp_path, channel, **files)
    return p.channels["ch"].run(Message(text))
