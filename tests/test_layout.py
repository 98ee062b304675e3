"""The package's architecture holds: imports go one way (method before training before front
ends), the core imports no Qt, napari or front end, and no module imports itself in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import napari_colorrl

PACKAGE = Path(napari_colorrl.__file__).parent

#: Layers of the package, lowest first: a module may import only from its own layer or below.
LAYERS = {
    "napari_colorrl.core.config": 0, "napari_colorrl.core.settings": 0,
    "napari_colorrl.core.metrics": 0,
    "napari_colorrl.core.runtime": 1, "napari_colorrl.core.data": 1,
    "napari_colorrl.core.method": 2, "napari_colorrl.core.model": 3,
    "napari_colorrl.core.inference": 4, "napari_colorrl.core.tiling": 4,
    "napari_colorrl.core.planning": 4,
    "napari_colorrl.core.segmentation": 4, "napari_colorrl.core.tile_statistics": 4,
    "napari_colorrl.core.training": 5,
    "napari_colorrl.core.demo": 6, "napari_colorrl.sample_data": 6,
    "napari_colorrl.cli": 7, "napari_colorrl.widgets": 7,
}
FRONT_END = ("qtpy", "napari", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6",
             "napari_colorrl.cli", "napari_colorrl.widgets", "psygnal", "superqt")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every module named by an import anywhere in the file (lazy and relative imports
    included, relative ones resolved against the module ``name``)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def _layer(module: str) -> int | None:
    best = None
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            best = rank
    return best


def test_imports_go_one_way_and_the_core_imports_no_front_end():
    modules = _modules()
    problems = []
    for name, path in modules.items():
        layer = _layer(name)
        for imported in _imports(path, name):
            front = any(imported == f or imported.startswith(f + ".") for f in FRONT_END)
            if name.startswith("napari_colorrl.core") and front:
                problems.append(f"{name} imports the front end {imported}")
            target = _layer(imported)
            if layer is not None and target is not None and target > layer:
                problems.append(f"{name} (layer {layer}) imports {imported} (layer {target})")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {m for m in _imports(path, name) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ is imported by its modules implicitly; only explicit edges count.
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_every_layer_exists():
    modules = _modules()
    for prefix in LAYERS:
        assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix
