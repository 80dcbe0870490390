"""The layers' import contract, read from the source (no import runs): service and cli -> codec -> kernels.

kernels imports neither codec nor service; codec imports no service; the file format (codec.format) and the
decoder (codec.decode) import nothing of the trainer (codec.train), wherever in a module the import is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# (package whose modules are checked, packages they must not import)
CONTRACT = [
    ("kernels", ("codec", "service", "cli", "bench")),
    ("codec", ("service", "cli", "bench")),
    ("codec.format", ("codec.train",)),
    ("codec.decode", ("codec.train",)),
]


def imported_modules(path: Path) -> set[str]:
    """Every absolute module an import statement of the file names (``from a import b``: a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the contract reads absolute ones)"
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize(("package", "forbidden"), CONTRACT, ids=[package for package, _ in CONTRACT])
def test_layer_imports_nothing_above_it(package, forbidden):
    files = sorted((REPO / package.replace(".", "/")).rglob("*.py"))
    assert files, f"no modules found for {package}"
    broken = sorted(f"{path.relative_to(REPO)} imports {module}" for path in files
                    for module in imported_modules(path) if any(_within(module, bad) for bad in forbidden))
    assert not broken, "\n".join(broken)


def test_the_contract_sees_a_breach(tmp_path):
    module = tmp_path / "breach.py"
    module.write_text("def late():\n    from codec.train.encoder import encode_array\n")
    assert "codec.train.encoder" in imported_modules(module)
