"""The layering the code keeps, read from the imports themselves (``ast``, no import is executed).

Layers, lowest first (README "Layers"):

    core -> accounts -> geo -> ledger -> tasks -> checkin, evidence -> heatmap -> api, workers, sim, bench, migrations

Rules:
1. A package imports only packages in layers below its own, at module top or inside a function alike.
2. Packages in one layer do not import each other (``checkin`` and ``evidence`` never do), except the
   top layer's edges listed in ``TOP_LAYER_EDGES``: the ``fieldproof`` CLI in ``api`` starts the Celery worker
   and beat (``api -> workers``, also the API's after-commit job dispatcher) and runs the simulator
   (``api -> sim``); the benchmarks photograph the simulator's scenes (``bench -> sim``) and serve the API in
   process, some with a statement swapped to measure what a change added (``bench -> api``, bench/presence_app.py).
   Nothing else imports ``api``; ``workers``, ``sim`` and ``migrations`` import no other top-layer package.
3. A lower layer learns of a higher one by registration (``tasks.hooks``), never by import.
4. No import inside a function unless a comment says why: on the import's line, or on the line just above
   it (a group of consecutive imports may share one comment above the first). ``noqa``/``type:`` markers
   are not reasons.
5. Every top-level package is placed in a layer, so a new one has to be given a place.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("accounts",),
    ("geo",),
    ("ledger",),
    ("tasks",),
    ("checkin", "evidence"),
    ("heatmap",),
    ("api", "workers", "sim", "bench", "migrations"),
]
LAYER_OF = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
TOP_LAYER_EDGES = {("api", "workers"), ("api", "sim"), ("bench", "sim"), ("bench", "api")}
NOT_REASONS = ("noqa", "type:", "pragma")
# Files another change is rewriting now (the request's session handling): their lazy imports get a why-comment
# with that change. Listed by (file, imported package), so no new silent import can hide in them meanwhile.
PENDING_WHY: set[tuple[str, str]] = set()


def _modules():
    """Every project module (path, package) outside tests and vendored browser files."""
    for pkg in LAYER_OF:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "node_modules" not in path.parts:
                yield path, pkg


def _imports(path: Path):
    """(lineno, imported top-level name, inside_function) for every import in the module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module_parts = path.relative_to(ROOT).with_suffix("").parts
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((child.lineno, a.name.split(".")[0], in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against this module's package
                    found.append((child.lineno, module_parts[0], in_function))
                elif child.module:
                    found.append((child.lineno, child.module.split(".")[0], in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def _has_reason(lines: list[str], lineno: int) -> bool:
    """A why-comment on the import's line or just above it (shared by a run of consecutive imports)."""

    def is_reason(line: str) -> bool:
        if "#" not in line:
            return False
        comment = line.split("#", 1)[1].strip()
        return bool(comment) and not comment.startswith(NOT_REASONS)

    if is_reason(lines[lineno - 1]):
        return True
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith(("from ", "import ")) and not is_reason(lines[i]):
        i -= 1
    return i >= 0 and lines[i].strip().startswith("#") and is_reason(lines[i])


def _edge_allowed(src: str, dst: str) -> bool:
    if LAYER_OF[dst] < LAYER_OF[src]:
        return True
    return (src, dst) in TOP_LAYER_EDGES


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(LAYER_OF), f"place these packages in LAYERS: {sorted(packages - set(LAYER_OF))}"


def test_packages_import_only_lower_layers():
    breaches = []
    for path, pkg in _modules():
        for lineno, name, _ in _imports(path):
            if name in LAYER_OF and name != pkg and not _edge_allowed(pkg, name):
                breaches.append(f"{pkg} -> {name}  ({path.relative_to(ROOT)}:{lineno})")
    assert not breaches, "imports against the layering:\n" + "\n".join(sorted(breaches))


def test_imports_inside_functions_say_why():
    silent = []
    for path, _ in _modules():
        lines = path.read_text().splitlines()
        for lineno, name, in_function in _imports(path):
            pending = (path.relative_to(ROOT).as_posix(), name) in PENDING_WHY
            if in_function and not pending and not _has_reason(lines, lineno):
                silent.append(f"{path.relative_to(ROOT)}:{lineno} ({name})")
    assert not silent, f"{len(silent)} imports inside functions without a why-comment:\n" + "\n".join(silent)


def test_the_checker_sees_function_imports_and_comments():
    """The reader itself: nested imports are found, and only a real comment excuses them."""
    src = (
        "import os\n"
        "def f():\n"
        "    # lazy: heavy optional dependency\n"
        "    import numpy\n"
        "    import av\n"
        "    x = 1\n"
        "    import json  # noqa: F401\n"
        "    from core import errors  # lazy: start-up time\n"
    )
    lines = src.splitlines()
    tree = ast.parse(src)
    nested = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and n.col_offset > 0]
    assert [n.lineno for n in nested] == [4, 5, 7, 8]
    assert [_has_reason(lines, n.lineno) for n in nested] == [True, True, False, True]
