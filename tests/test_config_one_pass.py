"""What only building a channel finds (a function that does not import, a missing table, an
encryption key that does not load) comes in the same pass as every other config error:
`load_config`, `switchboard check`, `switchboard run` and reload all report it at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import pytest_twisted

from engine.components import load_config
from engine.config import ConfigError
from engine.mllp.client import BlockingMLLPClient

from .engine_harness import in_thread, start_engine
from .test_reload import adt, outputs

REPO = Path(__file__).resolve().parents[1]

ROUTES = """\
store: sqlite:///var/store.db
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1", ack: on_recept}
store_options:
  encryption: {current: k1, keys: {k1: {env: ONE_PASS_KEY_UNSET}}}
routes:
  - {match: {}, to: [lab]}
"""

LAB = """\
name: lab
steps:
  - python: one_pass_gone:fn
  - python: one_pass_tx:nope
  - python: one_pass_broken:fn
  - translate: {field: "OBX[*]-3", table: no-such-table}
  - set: {MSH-5: [not, a, value]}
destinations:
  - {name: out, file: out}
"""

EXPECTED = [
    "channels/lab.yaml:3:13: step 1 (python): cannot import one_pass_gone: "
    "ModuleNotFoundError: No module named 'one_pass_gone'",
    "channels/lab.yaml:4:13: step 2 (python): one_pass_tx has no function 'nope'",
    "channels/lab.yaml:5:13: step 3 (python): cannot import one_pass_broken: SyntaxError: "
    "invalid syntax (one_pass_broken.py, line 2)",
    "channels/lab.yaml:6:43: step 4 (translate): table 'no-such-table' not found: tried "
    "transforms/tables/no-such-table.csv and transforms/tables/no-such-table.json",
    "channels/lab.yaml:7:18: expected a value for 'MSH-5', got list",
    "routes.yaml:3:56: invalid value 'on_recept' for 'ack' (allowed: on_receipt, "
    "after_routing); did you mean 'on_receipt'?",
    "routes.yaml:5:15: encryption: key 'k1': environment variable ONE_PASS_KEY_UNSET is not set",
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ONE_PASS_KEY_UNSET", raising=False)
    (tmp_path / "channels").mkdir()
    (tmp_path / "routes.yaml").write_text(ROUTES)
    (tmp_path / "channels" / "lab.yaml").write_text(LAB)
    (tmp_path / "one_pass_tx.py").write_text("def fn(message, ctx):\n    pass\n")
    (tmp_path / "one_pass_broken.py").write_text("def fn(message, ctx):\n    pass pass\n")
    yield tmp_path
    for name in ("one_pass_tx", "one_pass_broken"):
        sys.modules.pop(name, None)


def test_load_config_reports_build_problems_with_the_structural_ones(project):
    with pytest.raises(ConfigError) as caught:
        load_config("routes.yaml")
    assert caught.value.format().splitlines() == [*EXPECTED, "7 errors in 2 files."]


def test_a_step_whose_values_did_not_validate_is_not_built(project):
    (project / "channels" / "lab.yaml").write_text(
        "name: lab\nsteps:\n"
        "  - translate: {field: OBX3, table: no-such-table}\n"  # not built: its field is bad
        "  - python: {function: one_pass_gone:fn, optons: {}}\n"  # built: nothing is bad
    )
    (project / "routes.yaml").write_text("routes:\n  - {match: {}, to: [lab]}\n")
    with pytest.raises(ConfigError) as caught:
        load_config("routes.yaml")
    assert caught.value.format().splitlines() == [
        "channels/lab.yaml:3:24: 'field': 'OBX3' is not a field path; write "
        "SEG[-field[.component[.subcomponent]]] with optional [n] or [*] after the segment or "
        "field, like PID-3.1, OBX[2]-5, PID-3[2].1",
        "channels/lab.yaml:4:24: step 2 (python): cannot import one_pass_gone: "
        "ModuleNotFoundError: No module named 'one_pass_gone'",
        "channels/lab.yaml:4:42: unknown key 'optons' in step 2 (python); did you mean 'options'?",
        "3 errors in 1 file.",
    ]


def _switchboard(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=project, capture_output=True, text=True,
        timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_switchboard_check_prints_every_error_once(project):
    out = _switchboard(project, "check", "-c", "routes.yaml")
    assert out.returncode == 1
    assert out.stderr.splitlines() == [*EXPECTED, "7 errors in 2 files."]


def test_switchboard_run_starts_nothing_on_them(project):
    out = _switchboard(project, "run", "-c", "routes.yaml")
    assert out.returncode == 1
    assert out.stderr.splitlines() == [*EXPECTED, "7 errors in 2 files; nothing was started."]
    assert not (project / "var").exists()  # the store was not touched


def test_a_missing_config_file_is_all_check_says(tmp_path):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "bad.yaml").write_text("name: [bad\n")  # beside it, not read
    out = _switchboard(tmp_path, "check", "-c", "nope.yaml")
    assert out.returncode == 1
    assert (out.stdout, out.stderr) == ("", "nope.yaml: file not found\n")


CHANNEL = textwrap.dedent(
    """\
    name: adt
    steps:
      - python: one_pass_mark:mark
    destinations:
      - {name: out, file: out}
    """
)
MARK = 'VALUE = "{value}"\n\n\ndef mark(message, ctx):\n    message.set("MSH-5", VALUE)\n'


@pytest.fixture
def engine(tmp_path):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(CHANNEL)
    (tmp_path / "one_pass_mark.py").write_text(MARK.format(value="FIRST"))
    sb = start_engine(
        tmp_path,
        'listeners:\n  - {name: keep, mllp: "tcp:0:interface=127.0.0.1"}\n'
        "routes:\n  - {match: {type: ADT}, to: [adt]}\n",
        channels=(),
    )
    yield sb, tmp_path
    pytest_twisted.blockon(sb.stopService())
    sys.modules.pop("one_pass_mark", None)


def send(sb, payload: bytes) -> bytes:
    with BlockingMLLPClient("127.0.0.1", sb.port_of("keep"), timeout=10) as client:
        return client.send(payload)


@pytest_twisted.inlineCallbacks
def test_reload_reports_them_together_and_keeps_the_running_code(engine):
    sb, tmp_path = engine
    routes = tmp_path / "routes.yaml"
    good_routes = routes.read_text()
    routes.write_text(good_routes.replace("type: ADT", "tpye: ADT"))
    (tmp_path / "one_pass_mark.py").write_text(MARK.format(value="SECOND") + "def (\n")
    ok, lines = yield sb.reload()
    assert not ok
    assert [line.split(": ", 1)[1] for line in lines] == [
        "step 1 (python): cannot import one_pass_mark: SyntaxError: invalid syntax "
        "(one_pass_mark.py, line 6)",
        "unknown key 'tpye' in match of route 1; did you mean 'type'?",
    ]

    # A changed module that loads is checked too, without touching the running one: the
    # refused reload leaves the engine marking FIRST.
    (tmp_path / "one_pass_mark.py").write_text(MARK.format(value="SECOND"))
    ok, lines = yield sb.reload()
    assert not ok and len(lines) == 1, lines
    reply = yield in_thread(send, sb, adt(1))
    assert b"MSA|AA|M1" in reply

    routes.write_text(good_routes)
    ok, lines = yield sb.reload()
    assert ok, lines
    reply = yield in_thread(send, sb, adt(2))
    assert b"MSA|AA|M2" in reply
    assert outputs(sb) == [b"FIRST", b"SECOND"]
