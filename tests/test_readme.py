"""README.md is true: its YAML parses and validates, the channel test it shows passes against
the shipped channel, the outputs it shows are what the commands print, and the five-minute
tour (with the TLS steps) runs as written against a copy of the shipped configuration."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from engine.components import REGISTRY, load_config
from engine.config import ConfigError, load_yaml
from engine.config import load_config as validate_only
from engine.config.registry import using
from engine.config.routes_spec import ROUTES
from engine.config.validation import At, Ctx
from engine.testing import format_report, run_tests

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
SHIPPED = ("routes.yaml", "channels", "transforms", "examples")


def blocks(language: str, text: str = README) -> list[str]:
    """The fenced blocks of `language` (\"\" for none), also those indented in a list."""
    found = re.findall(rf"^( *)```{language}\n(.*?)^\1```", text, re.S | re.M)
    return [textwrap.dedent(indent + body) for indent, body in found]


def section(title: str) -> str:
    """The README text from the heading `title` to the next heading of its level or above."""
    level, _ = title.split(" ", 1)
    start = README.index(f"\n{title}\n")
    end = README.find(f"\n{level} ", start + 1)
    return README[start : end if end != -1 else None]


def shown_output(block: str) -> list[str]:
    """A `# ...` output block as lines, without the `# ` and the exit status note."""
    lines = [line.removeprefix("#").removeprefix(" ") for line in block.strip().splitlines()]
    return [re.sub(r"\s+\(exit status \d\)$", "", line) for line in lines if line]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the shipped configuration, the current directory."""
    for name in SHIPPED:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_yaml_and_json_block_parses(tmp_path):
    yaml_blocks = blocks("yaml")
    assert len(yaml_blocks) >= 4
    for index, text in enumerate(yaml_blocks):
        path = tmp_path / f"block{index}.yaml"
        path.write_text(text)
        root, problems = load_yaml(path)
        assert root is not None and problems == [], (text, [p.format() for p in problems])
    for text in blocks("json"):
        json.loads(text)


def test_the_config_examples_validate(project):
    seen = []
    for text in blocks("yaml"):
        if text.startswith("# routes.yaml"):  # routes to a channel not shipped: the spec alone
            (project / "block.yaml").write_text(text)
            root, _ = load_yaml(project / "block.yaml")
            ctx = Ctx(str(project / "block.yaml"), project)
            with using(REGISTRY):
                ROUTES.validate(root, ctx, At((), "routes.yaml", None), None)
            assert [p.format() for p in ctx.problems] == [], text
        elif text.startswith("# channels/lab-results.yaml"):
            (project / "channels" / "lab-results.yaml").write_text(text)
            load_config("routes.yaml")  # built too: its function imports, its table loads
        elif text.startswith("destinations:"):  # the FHIR destination, in a channel of its own
            (project / "channels" / "readme-fhir.yaml").write_text("name: readme-fhir\n" + text)
            # validated, not built: its hook is an example
            validate_only("routes.yaml", registry=REGISTRY)
            (project / "channels" / "readme-fhir.yaml").unlink()
        else:
            continue
        seen.append(text.split("\n", 1)[0])
    assert len(seen) == 3, seen


def _readme_channel_tests(project: Path) -> None:
    [tests] = [text for text in blocks("yaml") if text.startswith("tests:")]
    (project / "channels" / "lab-results_test.yaml").write_text(tests)


def test_the_channel_test_example_passes_against_the_shipped_channel(project):
    _readme_channel_tests(project)
    report = run_tests([project / "channels" / "lab-results_test.yaml"])
    assert report.ok and report.passed == 2, format_report(report)


def test_the_channel_test_output_shown_is_what_switchboard_test_prints(project):
    _readme_channel_tests(project)
    channel = project / "channels" / "lab-results.yaml"
    text = channel.read_text()
    translate = re.search(r"  - translate:\n(      .*\n)+", text)
    assert translate, "the shipped lab-results channel has no translate step"
    channel.write_text(text.replace(translate.group(0), ""))
    block = next(b for b in blocks("sh", section("### Testing a channel before it goes live")))
    assert block.splitlines()[0] == ".venv/bin/switchboard test channels/"
    assert format_report(run_tests(["channels/"])).splitlines() == shown_output(
        "\n".join(block.splitlines()[1:])
    )


def test_the_check_output_shown_is_what_switchboard_check_prints(project):
    """The README's example: a misspelt key, a function that is not there, two listeners on
    one port."""
    channel = project / "channels" / "lab-results.yaml"
    channel.write_text(
        channel.read_text()
        .replace("      field: OBX[*]-3", "      feild: OBX[*]-3")
        .replace("transforms.lab:normalize_units", "transforms.lab:normalise_units")
    )
    routes = project / "routes.yaml"
    routes.write_text(routes.read_text().replace("tcp:2576:interface", "tcp:2575:interface"))
    [block] = [b for b in blocks("", section("## Configuration")) if b.strip()]
    with pytest.raises(ConfigError) as caught:
        load_config("routes.yaml")
    assert caught.value.format().splitlines() == block.strip().splitlines()


# The tour ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(text: str) -> list[tuple[list[str], list[str]]]:
    """The `.venv/bin/switchboard ...` commands of the sh blocks in `text` (continuation lines
    joined, trailing comments dropped), each with the `# ...` output lines shown under it."""
    found: list[tuple[list[str], list[str]]] = []
    for block in blocks("sh", text):
        lines = block.replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.strip()
            if line.startswith(".venv/bin/switchboard"):
                found.append((shlex.split(line, comments=True)[1:], []))
            elif line.startswith("#") and found:
                found[-1][1].append(line)
    return found


class Tour:
    """The tour's engine on a copy of the shipped config: listeners and admin on free ports,
    destinations on closed ones (nothing answers, as in the README)."""

    def __init__(self, project: Path):
        self.project = project
        self.ports = {old: str(free_port()) for old in ("2575", "2576", "2577", "8480")}
        routes = project / "routes.yaml"
        text = routes.read_text()
        for old, new in self.ports.items():
            text = text.replace(f"tcp:{old}:", f"tcp:{new}:")
        routes.write_text(text)
        self.closed = {}
        for path in (project / "channels").glob("*.yaml"):
            path.write_text(re.sub(r"127\.0\.0\.1:(66\d\d|809\d)", self._closed, path.read_text()))
        self.env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.log = project / "engine.log"
        with self.log.open("w") as log:  # a file: a pipe nobody reads could fill and block it
            self.engine = subprocess.Popen(
                [sys.executable, "-m", "engine", "run"], cwd=project, env=self.env,
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        healthz = f"http://127.0.0.1:{self.ports['8480']}/healthz"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(healthz, timeout=1):
                    return
            except OSError:
                if self.engine.poll() is not None:
                    pytest.fail(f"the engine exited: {self.log.read_text()}")
                time.sleep(0.1)
        pytest.fail("the engine did not answer /healthz in 30 s")

    def _closed(self, match: re.Match) -> str:
        port = self.closed.setdefault(match.group(1), str(free_port()))
        return f"127.0.0.1:{port}"

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        args = [re.sub(r"^127\.0\.0\.1:(\d+)$", lambda m: f"127.0.0.1:{self.ports[m[1]]}", a)
                for a in args]  # fmt: skip
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=self.project,
                              env=self.env, capture_output=True, text=True, timeout=60)  # fmt: skip

    def stop(self) -> None:
        if self.engine.poll() is None:
            self.engine.send_signal(signal.SIGTERM)
            try:
                self.engine.wait(20)
            except subprocess.TimeoutExpired:
                self.engine.kill()
                self.engine.wait(10)


@pytest.fixture
def tour(project):
    running = Tour(project)
    yield running
    running.stop()


def _open(queue_list: str) -> dict[str, tuple[int, int]]:
    """`queue list` as destination -> (open deliveries, dead); the split between pending, in
    flight and retry depends on the moment."""
    rows = {}
    for line in queue_list.splitlines()[1:]:
        name, pending, in_flight, retry, held, dead, *_ = line.split()
        rows[name] = (int(pending) + int(in_flight) + int(retry) + int(held), int(dead))
    return rows


@pytest.mark.slow
def test_the_tour_runs_as_written(tour, project):
    steps = commands(section("## A five-minute tour"))
    sends = [(args, shown) for args, shown in steps if args[0] == "send"]
    assert len(sends) == 3
    for args, shown in sends:  # step 2
        out = tour.run(args)
        assert out.stdout.splitlines() == shown_output("\n".join(shown)), out.stderr
        assert out.returncode == (1 if "(exit status 1)" in shown[-1] else 0), out.stderr

    for args, _ in steps:  # step 3: the store
        if args[0] == "messages":
            out = tour.run(args)
            assert out.returncode == 0 and "TOUR0001" in out.stdout, out.stderr

    shutil.copy(project / "examples" / "batch.hl7", project / "var" / "drop")  # step 4
    done = project / "var" / "drop" / "done" / "batch.hl7.ack"
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert done.exists(), "the dropped batch was not taken in 30 s"

    by_name = {" ".join(args[:2]): (args, shown) for args, shown in steps}
    args, shown = by_name["queue list"]  # step 5: queues with something in them
    out = tour.run(args)
    assert out.returncode == 0, out.stderr
    assert _open(out.stdout) == _open("\n".join(shown_output("\n".join(shown))))
    args, shown = by_name["queue show"]
    out = tour.run(args)
    assert out.returncode == 0 and out.stdout.strip() != "queue is empty", out.stdout
    head = re.match(r"\s*(\d+) message (\d+)", shown_output("\n".join(shown))[0])
    assert head and re.match(rf"\s*{head[1]} message {head[2]} ", out.stdout), out.stdout
    assert f"cannot connect to tcp:127.0.0.1:{tour.closed['6661']}" in out.stdout
    out = tour.run(["status"])
    assert out.returncode == 0 and "\\n" not in out.stdout, out.stdout
    listeners, destinations = out.stdout.split("\n\n")
    assert listeners.startswith("LISTENER") and destinations.startswith("DESTINATION")
    assert "lab-results/epic" in destinations

    tls = commands(section("## TLS"))  # step 7: enable the TLS listener, then send
    assert [args[:2] for args, _ in tls] == [["certs", "init"], ["reload"], ["send", "--ca"]]
    out = tour.run(tls[0][0])
    assert out.returncode == 0 and (project / "certs" / "client.pem").exists(), out.stderr
    routes = project / "routes.yaml"
    lines = routes.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "- name: lab-tls" in line)
    for i in range(start, start + 4):  # "delete the `# ` at the start of the four lines"
        lines[i] = lines[i].replace("# ", "", 1)
    routes.write_text("\n".join(lines) + "\n")
    for args, shown in tls[1:]:
        out = tour.run(args)
        assert out.stdout.splitlines() == shown_output("\n".join(shown)), out.stderr
        assert out.returncode == 0
    plain = tour.run(["send", "127.0.0.1:2577", "examples/adt_a01.hl7"])
    assert plain.returncode == 1
    assert "FAILED connection closed by the peer before an ACK arrived" in plain.stdout
