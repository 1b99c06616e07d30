"""The dependency rule is enforced: the import-linter contracts of pyproject.toml catch a wrong import.

Each test runs the real ``lint-imports`` on a throwaway copy of the package (``tmp_path``) with
pyproject.toml's own contracts, so what passes here is what ``make lint`` and CI check. The
wrong imports sit inside functions on purpose: the package imports its heavy stack lazily (fast
``--help``) and a lazy import must not slip past the contracts.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
# the one next to this interpreter (the venv's), else the one on PATH
_BESIDE_PYTHON = Path(sys.executable).with_name("lint-imports")
LINT_IMPORTS = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.is_file() else shutil.which("lint-imports")


def package_copy(root: Path) -> Path:
    """``medvision/`` (Python sources only) and pyproject.toml copied under ``root``."""
    shutil.copytree(REPO / "medvision", root / "medvision", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` run in ``root``: it puts the cwd first on sys.path, so the copy is what it reads."""
    selected = [arg for contract in contracts for arg in ("--contract", contract)]
    assert LINT_IMPORTS, "lint-imports is not installed: pip install -e '.[test]'"
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo", "pyproject.toml", *selected],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


def add_module(root: Path, module: str, body: str) -> None:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    path.write_text(f'"""A deliberate mistake of tests/test_lint.py."""\n\n{body}')


def lazy_import(target: str) -> str:
    return f"def load():\n    import {target}\n\n    return {target}\n"


@pytest.mark.parametrize(
    ("module", "imported", "contracts"),
    [
        # a DataModule that knows a network
        ("medvision.data.wrong_import", "medvision.models", ["data-models-independent", "layers"]),
        # a callback that reads data (callbacks get what they need from the module/trainer)
        ("medvision.callbacks.wrong_import", "medvision.data.splits", ["callbacks-no-data"]),
        # utils is the leaf every package may import, so it imports none of them
        ("medvision.utils.wrong_import", "medvision.metrics", ["utils-leaf", "layers"]),
        # a library that calls a command module
        ("medvision.workflows.wrong_import", "medvision.cli", ["nothing-imports-cli", "layers"]),
        # a lower layer reaching up: a LightningModule importing the training road built on it
        ("medvision.models.wrong_import", "medvision.train", ["layers"]),
    ],
)
def test_a_wrong_import_breaks_its_contract(tmp_path: Path, module: str, imported: str, contracts: list[str]) -> None:
    root = package_copy(tmp_path)
    add_module(root, module, lazy_import(imported))

    for contract in contracts:
        result = lint_imports(root, contract)
        output = result.stdout + result.stderr
        assert result.returncode == 1, f"contract {contract} missed `import {imported}` in {module}:\n{output}"
        assert "BROKEN" in output
        assert f"{module} -> {imported}" in output, output


def test_an_import_cycle_breaks_the_acyclic_contract(tmp_path: Path) -> None:
    root = package_copy(tmp_path)
    add_module(root, "medvision.utils.cycle_a", lazy_import("medvision.utils.cycle_b"))
    add_module(root, "medvision.utils.cycle_b", lazy_import("medvision.utils.cycle_a"))

    result = lint_imports(root, "no-cycles")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "No cycles are allowed in medvision.utils" in output, output
    assert "cycle_a" in output and "cycle_b" in output, output


def test_the_package_keeps_every_contract(tmp_path: Path) -> None:
    """The unmodified copy passes: the same check as ``make lint``'s lint-imports step."""
    result = lint_imports(package_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components (more than one module) of the module import graph (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycle_between_any_two_modules() -> None:
    """Module-level, function-local imports included: stricter than the ``no-cycles`` contract.

    ``acyclic_siblings`` compares siblings, so it cannot see a package ``__init__`` and one of its
    own submodules importing each other (``medvision.models`` lazily imports its modules); this
    check sees every cycle in the graph.
    """
    graph = grimp.build_graph("medvision")
    cycles = import_cycles(graph)
    assert not cycles, "import cycles in medvision: " + "; ".join(" <-> ".join(cycle) for cycle in cycles)


def test_the_cycle_check_finds_a_package_importing_its_own_submodule_back() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.sub", "pkg.other"):
        graph.add_module(module)
    graph.add_import(importer="pkg", imported="pkg.sub")
    graph.add_import(importer="pkg.sub", imported="pkg")
    graph.add_import(importer="pkg.other", imported="pkg.sub")
    assert import_cycles(graph) == [["pkg", "pkg.sub"]]
