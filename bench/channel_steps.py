"""Cost of each channel step in microseconds per message, in-process (no I/O).

For each step kind it builds a one-step channel from YAML with the real loader and runs it
on the benchmark's ADT^A01 (1.5 KB) N times; the parse of the message and an empty channel
are measured too, so each step's own cost is its row minus the empty channel's.

    .venv/bin/python bench/channel_steps.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import loadgen

from engine.components import load_config
from engine.hl7.message import Message
from engine.pipeline import build_pipeline

STEPS = {
    "(empty channel)": "",
    "filter": "- filter: {field: MSH-4, in: [GENERAL_HOSP, OTHER]}",
    "set": "- set: {MSH-5: EHR, MSH-6: MAIN}",
    "copy": "- copy: {from: PID-3.1, to: PID-2}",
    "delete": "- delete: 'AL1[*]'",
    "map": "- map: {field: PV1-2, values: {I: IP, O: OP}}",
    "replace": "- replace: {field: PID-13.1, pattern: '[^0-9]', with: ''}",
    "translate": "- translate: {field: 'OBX[*]-3', table: vitals, keep_original: true}",
    "flag": "- flag: {rules: [{code: 29463-7, above: 150, below: 30}]}",
    "python": "- python: benchfns:noop",
    "validate": "- validate: {}",
    "filter+translate+set": "- filter: {field: MSH-4, in: [GENERAL_HOSP]}\n"
    "- translate: {field: 'OBX[*]-3', table: vitals}\n- set: {MSH-5: EHR}",
}
VITALS = "source_code,target_code,target_display,target_system\n8302-2,50373000,Height,SCT\n"


def build(tmp: Path, steps: str):
    (tmp / "channels").mkdir(parents=True, exist_ok=True)
    (tmp / "transforms" / "tables").mkdir(parents=True, exist_ok=True)
    (tmp / "transforms" / "tables" / "vitals.csv").write_text(VITALS)
    (tmp / "benchfns.py").write_text("def noop(message, ctx):\n    return None\n")
    body = "name: ch\nsteps:\n" + textwrap.indent(steps, "  ") if steps else "name: ch\n"
    (tmp / "channels" / "ch.yaml").write_text(
        body + "\ndestinations:\n  - {name: out, mllp: 'tcp:127.0.0.1:9'}\n"
    )
    (tmp / "routes.yaml").write_text(f"store: sqlite:///{tmp}/x.db\n")
    return build_pipeline(load_config(tmp / "routes.yaml")).channels["ch"]


def per_message(fn, n: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    args = ap.parse_args()
    payload = loadgen.message(b"BENCH-1")
    n = args.messages
    parse = per_message(lambda: Message.from_bytes(payload, "utf-8"), n)
    print(f"Channel step cost, {len(payload)}-byte ADT^A01, {n:,} runs each (CPU µs/message)")
    print(f"{'step':24} {'µs/msg':>8} {'own µs':>8}")
    print(f"{'parse (Message)':24} {parse:8.1f}")
    base = None
    for name, steps in STEPS.items():
        with tempfile.TemporaryDirectory() as d:
            try:
                channel = build(Path(d), steps)
            except Exception as exc:  # a step kind not available here
                print(f"{name:24} {'-':>8}  ({exc})")
                continue
            message = Message.from_bytes(payload, "utf-8")
            runs = n if name != "validate" else max(50, n // 200)
            cost = per_message(lambda ch=channel, m=message: ch.run(m), runs)
            if base is None:
                base = cost
            own = cost - base
            print(f"{name:24} {cost:8.1f} {own:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
