"""pyproject.toml declares every third-party distribution the code imports, spelled and pinned
as in requirements.lock: the rooms' imports against `dependencies`, the tests' against the
`test` extra as well, scripts/make_golden.py's against its own `golden` environment."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path
from typing import Iterable, Mapping

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("runtime", "modelzoo", "converters", "validation", "artifacts", "meshport", "experiments")
SCRIPTS = ("scripts",)
TESTS = ("tests",)
# Test helper modules beside the tests (pytest puts a test file's directory on sys.path, so they are
# imported by their own name, e.g. tests/e2e/foreign_models.py as `foreign_models`).
TEST_HELPERS = tuple(sorted({p.stem for p in (REPO / "tests").rglob("*.py")}))
FIRST_PARTY = frozenset(ROOMS + SCRIPTS + TESTS + TEST_HELPERS + ("conftest",))


def normalise(name: str) -> str:
    """A distribution name in PEP 503 form (case, `-`, `_` and `.` do not matter)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imports(paths: Iterable[Path]) -> dict[str, list[str]]:
    """Top-level module → every `file:line` importing it (absolute imports, lazy ones inside
    functions included) in the Python files under `paths`."""
    found: dict[str, list[str]] = {}
    for root in paths:
        for path in sorted(Path(root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], []).append(f"{path}:{node.lineno}")
    return found


def third_party(found: Mapping[str, list[str]], first_party: Iterable[str] = FIRST_PARTY) -> dict[str, list[str]]:
    """`found` without the standard library, `__future__` and the first-party rooms."""
    own = set(first_party) | {"__future__"}
    return {m: w for m, w in found.items() if m not in sys.stdlib_module_names and m not in own}


def declared(pyproject: Mapping, extras: Iterable[str] = ()) -> dict[str, Requirement]:
    """Normalised name → requirement of `[project] dependencies` and the named extras."""
    project = pyproject["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {})[extra]
    return {normalise(r.name): r for r in map(Requirement, reqs)}


def undeclared(found: Mapping[str, list[str]], names: Iterable[str],
               providers: Mapping[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]:
    """Module → (its distributions, where it is imported) for every module none of whose
    distributions is among `names`. A module installed nowhere here counts as a distribution
    of its own name (the golden script's mediapipe)."""
    have = {normalise(n) for n in names}
    missing = {}
    for module, where in sorted(found.items()):
        dists = sorted(set(providers.get(module) or [module]))
        if not have & {normalise(d) for d in dists}:
            missing[module] = (dists, where)
    return missing


def lock_pins(text: str) -> dict[str, tuple[str, str]]:
    """Normalised name → (name as spelled, version) of every `name==version` line of a lock."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[normalise(name)] = (name.strip(), version.strip())
    return pins


def lock_mismatches(reqs: Iterable[Requirement], pins: Mapping[str, tuple[str, str]]) -> list[str]:
    """Every requirement that the lock does not pin, spells otherwise, or pins outside its range."""
    bad = []
    for r in reqs:
        pin = pins.get(normalise(r.name))
        if pin is None:
            bad.append(f"{r}: not in requirements.lock")
        elif r.name != pin[0]:
            bad.append(f"{r}: requirements.lock spells it {pin[0]!r}")
        elif not r.specifier.contains(pin[1], prereleases=True):
            bad.append(f"{r}: requirements.lock pins {pin[1]}")
    return bad


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def providers() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _report(missing: Mapping[str, tuple[list[str], list[str]]]) -> str:
    return "\n".join(f"{m} (distribution {' or '.join(d)}), imported at {', '.join(w[:3])}"
                     for m, (d, w) in missing.items())


@pytest.mark.parametrize("rooms, extras", [(ROOMS, ()), (TESTS, ("test",)), (SCRIPTS, ("golden",))])
def test_every_third_party_import_is_declared(pyproject, providers, rooms, extras):
    found = third_party(imports(REPO / r for r in rooms))
    assert found, rooms                                     # the walk sees the imports at all
    missing = undeclared(found, declared(pyproject, extras), providers)
    assert not missing, "imported but not declared in pyproject.toml:\n" + _report(missing)


def test_declared_versions_are_the_lock_s(pyproject):
    pins = lock_pins((REPO / "requirements.lock").read_text())
    reqs = declared(pyproject, ("test",)).values()
    assert not lock_mismatches(reqs, pins)


def test_an_undeclared_import_is_reported_with_where(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(
        "import json\nimport numpy as np\nfrom . import sibling\nfrom pkg import b\n\n"
        "def lazy():\n    import yaml\n    from PIL import Image\n")
    found = third_party(imports([tmp_path / "pkg"]), first_party=("pkg",))
    assert sorted(found) == ["PIL", "numpy", "yaml"]
    providers = {"numpy": ["numpy"], "yaml": ["PyYAML"], "PIL": ["pillow"]}
    missing = undeclared(found, ["numpy", "Pillow"], providers)
    assert list(missing) == ["yaml"]
    dists, where = missing["yaml"]
    assert dists == ["PyYAML"] and where == [f"{tmp_path / 'pkg' / 'a.py'}:7"]
    assert list(undeclared({"mediapipe": ["s.py:1"]}, ["numpy"], providers)) == ["mediapipe"]
    assert not undeclared({"mediapipe": ["s.py:1"]}, ["MediaPipe"], providers)


def test_a_requirement_off_the_lock_is_reported():
    pins = lock_pins("# comment\nnumpy==1.26.4\nPyYAML==6.0.4  # why\n")
    assert pins == {"numpy": ("numpy", "1.26.4"), "pyyaml": ("PyYAML", "6.0.4")}
    reqs = [Requirement(r) for r in ("numpy==2.0", "pyyaml>=6", "PyYAML>=6,<7", "tqdm")]
    assert lock_mismatches(reqs, pins) == ["numpy==2.0: requirements.lock pins 1.26.4",
                                           "pyyaml>=6: requirements.lock spells it 'PyYAML'",
                                           "tqdm: not in requirements.lock"]
