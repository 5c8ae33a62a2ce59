"""Channel tests analysts run: ``switchboard test [PATH...]`` over ``channels/*_test.yaml``.

A test file names its channel (default: the file name without ``_test.yaml``) and lists
tests, each an input message and what to expect::

    tests:
      - name: local glucose code becomes LOINC
        input: {file: samples/oru_glucose.hl7}       # or {text: "MSH|..."}
        expect:
          ack: AA                                     # the ACK the engine would answer
          flags: [critical-glucose]
          epic: {fields: {"OBX[1]-3.1": 2345-7, MSH-5: EPIC}}
          rest-json: {contains: {segments: [[MSH]]}}
      - name: unknown facility is filtered
        input: {text: "MSH|^~\\\\&|X|NOWHERE|..."}
        expect: {filtered: true, no_output: [epic]}

``ack`` is computed as an ``after_routing`` listener would answer with the message routed to
this channel (AE when a step fails), unless the test names a real ``listener:``, whose settings
and the real routes are used. Every failure is reported with its file:line:column and
expected vs actual; nothing is sent anywhere. A test file with an error (YAML, an unknown key)
is reported with its file:line:column and runs no test; the other files still run. The spec
of the file is in ``engine.testing_spec``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.components import load
from engine.config import ConfigError
from engine.config.channel_spec import peek_text
from engine.config.errors import Problem, display_path
from engine.config.loader import Location, load_yaml
from engine.config.routes_spec import LISTENER_FIELDS, ROUTE
from engine.config.spec import Spec
from engine.config.validation import At, Ctx
from engine.context import Context
from engine.intake import ack_code_to_send, apply_channels, assess
from engine.pipeline import Pipeline
from engine.router import Router
from engine.testing_spec import test_file_spec

# A test without `listener:` is taken in as by an after_routing listener that routes every
# message to the channel under test.
_TEST_LISTENER = Spec("listener", "", LISTENER_FIELDS).build(
    {"name": "test", "ack": "after_routing"}
)


@dataclass
class Failure:
    location: Location
    test: str
    message: str

    def format(self) -> str:
        return f"{self.location}: {self.test}: {self.message}"


@dataclass
class Report:
    passed: int = 0
    failures: list[Failure] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.problems and self.passed > 0


def find_test_files(paths: list[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths or ["channels"]:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(path.glob("*_test.yaml")))
        else:
            out.append(path)
    return out


def _find_config(test_file: Path) -> Path | None:
    for parent in test_file.resolve().parents:
        candidate = parent / "routes.yaml"
        if candidate.is_file():
            return candidate
    return None


def run_tests(paths: list[str | Path]) -> Report:
    report = Report()
    cache: dict[Path, tuple[Any, Pipeline]] = {}
    files = find_test_files(paths)
    for file in files:
        if not file.is_file():
            report.problems.append(Problem(str(file), 0, 0, "no such test file"))
            continue
        report.files += 1
        _run_file(file, report, cache)
    if not files:
        report.problems.append(Problem(str(paths[0] if paths else "channels"), 0, 0,
                                       "no *_test.yaml files found"))  # fmt: skip
    return report


def _run_file(file: Path, report: Report, cache: dict) -> None:
    root, problems = load_yaml(file)
    if root is None:
        report.problems.extend(problems)
        return
    given = peek_text(root, "config")
    config_path = file.parent / given if given else _find_config(file)
    loaded = _load(config_path, cache, report) if config_path else None
    channel = peek_text(root, "channel") or file.name.removesuffix("_test.yaml")
    built = loaded[1].channels.get(channel) if loaded else None
    destinations = sorted(t.destination.name for t in built.targets) if built else None
    ctx = Ctx(str(file.absolute()), file.parent, problems, {})
    spec = test_file_spec(channel, destinations).validate(
        root, ctx, At((), "the test file", None), None
    )

    def loc(path: tuple) -> Location:
        """Where a value of the test file was written (or its nearest parent)."""
        while path:
            if path in ctx.locations:
                return ctx.locations[path]
            path = path[:-1]
        return Location(str(file.absolute()), 1, 1)

    if config_path is None:
        problems.append(Problem(str(file), 0, 0, "no routes.yaml found above this file; "
                                "name one with 'config:'"))  # fmt: skip
    elif loaded and built is None:
        channels = ", ".join(sorted(loaded[1].channels)) or "none"
        problems.append(loc(("channel",)).problem(f"no channel named '{channel}' "
                                                  f"(channels: {channels})"))  # fmt: skip
    if problems or not loaded:
        report.problems.extend(problems)  # a test file with errors runs no test
        return
    config, pipeline = loaded
    for index, test in enumerate(spec.tests):
        where = ("tests", index)
        label = f"{channel} / {test.name}"
        failures = _run_one(file, test, channel, config, pipeline, lambda p, w=where: loc((*w, *p)))
        if failures:
            report.failures.extend(Failure(location, label, msg) for location, msg in failures)
        else:
            report.passed += 1


def _load(config_path: Path, cache: dict, report: Report) -> tuple[Any, Pipeline] | None:
    """The config and pipeline at `config_path`, loaded once for all the files that use it;
    its problems are reported once."""
    key = config_path.resolve()
    if key not in cache:
        try:
            cache[key] = load(config_path, Context(fresh_modules={}))
        except ConfigError as exc:
            report.problems.extend(exc.problems)
            cache[key] = None
    return cache[key]


def _payload(file: Path, test: dict) -> bytes:
    source = test.input
    if source.file:
        return (file.parent / source.file).read_bytes()
    text = source.text.replace("\r\n", "\r").replace("\n", "\r")
    return (text if text.endswith("\r") else text + "\r").encode("utf-8")


def _run_one(file, test, channel, config, pipeline, loc) -> list[tuple[Location, str]]:
    expect = test.expect
    fails: list[tuple[Location, str]] = []
    try:
        payload = _payload(file, test)
    except OSError as exc:
        return [(loc(("input", "file")), f"cannot read input: {exc.strerror}")]
    if test.listener:
        try:
            listener = config.listener(test.listener)
        except KeyError:
            return [(loc(("listener",)), f"no listener named '{test.listener}'")]
        used = pipeline
    else:
        listener = _TEST_LISTENER
        used = Pipeline(Router([ROUTE.build({"to": [channel]})]), pipeline.channels)
    a = assess(payload, listener, used.router)
    apply_channels(a, used, listener)
    result = next((r for r in a.results if r.channel == channel), None)
    if "routed" in expect and expect["routed"] != (result is not None):
        fails.append(
            (
                loc(("expect", "routed")),
                f"routed: expected {expect['routed']}, "
                f"got {result is not None} (routes send it to {a.channels or 'nothing'})",
            )
        )
    if "ack" in expect:
        got = ack_code_to_send(a, listener.enhanced_ack) or "none"
        if got != expect["ack"]:
            detail = f" ({a.reason})" if a.reason else ""
            fails.append(
                (loc(("expect", "ack")), f"ack: expected {expect['ack']}, got {got}{detail}")
            )
    if result is None:
        if expect["outputs"] or expect.get("filtered") or expect.get("errored"):
            fails.append((loc(("expect",)), f"the message did not reach channel '{channel}': "
                          f"{a.reason or a.status}"))  # fmt: skip
        return fails
    if "filtered" in expect and expect["filtered"] != (result.status == "filtered"):
        fails.append((loc(("expect", "filtered")), f"filtered: expected {expect['filtered']}, "
                      f"got {result.status}{_at(result)}"))  # fmt: skip
    if "errored" in expect:
        want = expect["errored"]
        if want in ("false", "no"):
            if result.status == "errored":
                fails.append((loc(("expect", "errored")), f"errored: {result.reason}{_at(result)}"))
        elif result.status != "errored":
            fails.append((loc(("expect", "errored")), f"errored: expected a step error, got "
                          f"{result.status}"))  # fmt: skip
        elif want not in ("true", "yes") and want not in (result.reason or ""):
            fails.append((loc(("expect", "errored")), f"errored: expected a reason containing "
                          f"{want!r}, got {result.reason!r}"))  # fmt: skip
    elif result.status == "errored" and not expect.get("ack", "").startswith(("AE", "CE")):
        fails.append((loc(("expect",)), f"unexpected step error{_at(result)}: {result.reason}"))
    if "flags" in expect and list(expect["flags"]) != list(result.flags):
        fails.append((loc(("expect", "flags")), f"flags: expected {expect['flags']}, "
                      f"got {result.flags}"))  # fmt: skip
    produced = {o.destination: o for o in result.outputs}
    for dest in expect.get("no_output", []):
        if dest in produced:
            fails.append((loc(("expect", "no_output")), f"{dest}: expected no output, got one"))
    for dest, want in expect["outputs"].items():
        out = produced.get(dest)
        if out is None:
            fails.append((loc(("expect", dest)), f"{dest}: expected output, got none"
                          f" ({result.status}{_at(result)})"))  # fmt: skip
            continue
        fails.extend(
            _check_output(dest, want, out, result, lambda p, d=dest: loc(("expect", d, *p)))
        )
    return fails


def _at(result) -> str:
    return f" at step {result.step} ({result.step_kind})" if result.step else ""


def _check_output(dest, want, out, result, loc) -> list[tuple[Location, str]]:
    fails = []
    message = result.by_destination.get(dest)
    for path, expected in (want.fields or {}).items():
        got = message.get(path) if message is not None else None
        if (got or "") != expected:  # '' expects an empty or absent value
            fails.append((loc(("fields", path)),
                          f"{dest} {path}: expected {expected!r}, got {got!r}"))  # fmt: skip
    if want.text is not None:
        body = out.payload.decode("utf-8", errors="replace")
        if want.text not in body:
            fails.append((loc(("text",)), f"{dest}: body does not contain {want.text!r}"))
    if want.contains is not None:
        try:
            body = json.loads(out.payload)
        except ValueError:
            fails.append((loc(("contains",)), f"{dest}: the output is not JSON"))
        else:
            missing = _missing(want.contains, body, "")
            if missing:
                fails.append((loc(("contains",)), f"{dest}: {missing}"))
    return fails


def _missing(want, got, where: str) -> str | None:
    """Why ``got`` does not contain ``want`` (dicts: subset; lists: each wanted item matched
    by some item in order), or None."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{where or 'body'}: expected an object, got {json.dumps(got)[:80]}"
        for k, v in want.items():
            if k not in got:
                return f"{where}.{k}: missing" if where else f"{k}: missing"
            why = _missing(v, got[k], f"{where}.{k}" if where else k)
            if why:
                return why
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{where}: expected a list, got {json.dumps(got)[:80]}"
        start = 0
        for i, item in enumerate(want):
            for j in range(start, len(got)):
                if _missing(item, got[j], f"{where}[{j}]") is None:
                    start = j + 1
                    break
            else:
                return f"{where}[{i}]: no item matches {json.dumps(item)[:80]}"
        return None
    if str(want) != str(got):
        return f"{where}: expected {json.dumps(want)}, got {json.dumps(got)[:80]}"
    return None


def format_report(report: Report) -> str:
    """Problems, failures, then `N passed, M failed` and, when there were problems, how many
    in how many files (`, 1 error in 1 file`)."""
    problems = sorted(set(report.problems))
    lines = [p.format() for p in problems] + [f.format() for f in report.failures]
    summary = f"{report.passed} passed, {len({f.test for f in report.failures})} failed"
    if problems:
        summary += ", " + ConfigError(problems).format().splitlines()[-1].rstrip(".")
    lines.append(summary)
    return "\n".join(lines)


__all__ = ["Report", "display_path", "find_test_files", "format_report", "run_tests"]
