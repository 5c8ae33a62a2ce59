"""What the engine needs at run time: python-hl7 is a peer the tests talk to, never a
dependency of the engine."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;(]", requirement, maxsplit=1)[0].lower()


def test_python_hl7_is_only_in_the_dev_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "hl7" not in [_name(r) for r in project["dependencies"]]
    assert "hl7" in [_name(r) for r in project["optional-dependencies"]["dev"]]
    assert "hl7apy" in [_name(r) for r in project["dependencies"]]  # the engine's HL7 rules


def test_no_engine_source_imports_python_hl7():
    found = []
    for path in sorted((REPO / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            found += [f"{path.relative_to(REPO)}:{node.lineno}" for name in names
                      if name == "hl7" or name.startswith("hl7.")]  # fmt: skip
    assert found == []


# Every engine module imported with `hl7` made unimportable, in a fresh interpreter (this one
# has imported hl7 for the MLLP tests), so no import hides behind a function or a string.
# Left out: `engine.__main__` runs the CLI, the Alembic env script runs only inside Alembic.
_SKIP = {"engine.__main__", "engine.store.migrations.env"}
_IMPORT_ALL_WITHOUT_HL7 = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    class NoHl7(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hl7" or name.startswith("hl7."):
                raise ImportError(f"{name} is blocked: the engine must not need python-hl7")
            return None

    sys.meta_path.insert(0, NoHl7())
    SKIP = set(sys.argv[1:])
    import engine
    count = 0
    for info in pkgutil.walk_packages(engine.__path__, "engine."):
        if info.name not in SKIP:
            importlib.import_module(info.name)
            count += 1
    assert "hl7" not in sys.modules
    print(count)
    """
)


def test_no_engine_module_imports_python_hl7():
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL_WITHOUT_HL7, *_SKIP],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 50  # every module was walked, not just the package


def test_switchboard_check_runs_without_python_hl7():
    code = _IMPORT_ALL_WITHOUT_HL7.split("import engine", 1)[0] + textwrap.dedent(
        """
        from engine.cli import main
        sys.argv = ["switchboard", "check", "-c", "routes.yaml"]
        main()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "lab-results" in out.stdout
