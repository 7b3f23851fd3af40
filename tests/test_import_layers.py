"""The import-layer contract: arrows point down only,
runtime → modelzoo → converters → validation → artifacts → meshport (a room imports only from
rooms before it, lazily or not); experiments/ may use every room and no room uses it; no import
cycle between modules; the light rooms import no framework."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("runtime", "modelzoo", "converters", "validation", "artifacts", "meshport", "experiments")
HEAVY = ("torch", "tensorflow", "onnx", "onnxruntime", "onnx2tf", "coremltools", "ai_edge_litert", "cv2", "PIL",
         "matplotlib")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import statement of a source file,
    relative imports resolved."""
    mod = module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body} | {id(n) for n in ast.walk(tree) if isinstance(n, (ast.If, ast.Try))
                                        and n in tree.body for n in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno, id(node) in top))
            # `from pkg import sub` imports the submodule when it is one
            out += [(f"{name}.{a.name}", node.lineno, id(node) in top) for a in node.names]
    return out


def layer_violations(sources: dict[str, list[tuple[str, int, bool]]]) -> list[str]:
    """Every import of a room later in LAYERS than the importing module's own room."""
    bad = {}
    for mod, imps in sorted(sources.items()):
        room = mod.split(".")[0]
        if room not in LAYERS:
            continue
        for name, line, _ in imps:
            target = name.split(".")[0]
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(room):
                bad.setdefault((mod, line), f"{mod}:{line} imports {name} ({room} → {target} points up)")
    return sorted(bad.values())


def cycles(sources: dict[str, list[tuple[str, int, bool]]]) -> list[list[str]]:
    """Cycles among module-level imports between first-party modules (Tarjan's SCCs > 1)."""
    known = set(sources)
    graph = {m: sorted({n for n, _, top in imps if top and n in known and n != m
                        and not m.startswith(n + ".")}) for m, imps in sources.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def project_sources(root: Path = ROOT) -> dict[str, list[tuple[str, int, bool]]]:
    return {module_name(p, root): imports_of(p, root)
            for room in LAYERS if (root / room).is_dir() for p in sorted((root / room).rglob("*.py"))}


def test_arrows_point_down_only():
    sources = project_sources()
    assert {m.split(".")[0] for m in sources} >= set(LAYERS) - {"experiments"}
    assert layer_violations(sources) == []


def test_no_import_cycles():
    assert cycles(project_sources()) == []


def test_the_checker_catches_an_upward_import_and_a_cycle(tmp_path):
    """The contract test can fail: an upward import, lazy or not, and a cycle are each found."""
    for room, text in {"runtime": "def f():\n    from validation.compare import compare\n",
                       "modelzoo": "from . import b\n", "converters": "import runtime.files\n"}.items():
        (tmp_path / room).mkdir()
        (tmp_path / room / "__init__.py").write_text("")
        (tmp_path / room / "a.py").write_text(text)
    (tmp_path / "modelzoo" / "b.py").write_text("from .a import x\n")
    sources = project_sources(tmp_path)
    assert layer_violations(sources) == ["runtime.a:2 imports validation.compare (runtime → validation points up)"]
    assert cycles(sources) == [["modelzoo.a", "modelzoo.b"]]


@pytest.mark.parametrize("room", ["runtime", "modelzoo", "artifacts"])
def test_light_rooms_import_no_framework(room):
    """`import artifacts` (and the rooms below it that it needs) loads no ML framework and no
    converter or validation code — what keeps it fast (≈0.2 s here) for app teams' tooling."""
    code = (f"import sys, json, time\nt = time.perf_counter()\nimport {room}\n"
            "print(json.dumps({'s': time.perf_counter() - t, 'mods': sorted(sys.modules)}))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                    check=True).stdout)
    loaded = {m.split(".")[0] for m in out["mods"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert not loaded & {"converters", "validation", "meshport", "experiments"}
