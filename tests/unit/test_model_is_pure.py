"""``model/`` is the functional core: it may import the standard library and itself, nothing else.

The check reads the source with ``ast`` rather than importing it, so it also sees imports
inside functions and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import model

MODEL_DIR = Path(model.__file__).parent


def _foreign_imports(source: str) -> list[str]:
    """The modules ``source`` imports that are neither standard library nor ``model``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module or "")
    allowed = sys.stdlib_module_names | {"model"}
    return [name for name in found if name.split(".")[0] not in allowed]


def test_the_model_has_modules_to_check() -> None:
    assert {"invariants.py", "reference.py"} <= {p.name for p in MODEL_DIR.glob("*.py")}


def test_every_model_module_imports_only_the_standard_library_and_model() -> None:
    foreign = {
        path.name: imports
        for path in sorted(MODEL_DIR.rglob("*.py"))
        if (imports := _foreign_imports(path.read_text(encoding="utf-8")))
    }
    assert foreign == {}


def test_the_check_flags_third_party_and_service_imports_wherever_they_are() -> None:
    source = (
        "import json, aiohttp.web\n"
        "from model.invariants import QTY_MAX\n"
        "from . import reference\n"
        "def f() -> None:\n"
        "    from service import app\n"
        "if False:\n"
        "    import hypothesis\n"
    )
    assert sorted(_foreign_imports(source)) == ["aiohttp.web", "hypothesis", "service"]
