"""Layering: training, model surgery and the shared layer never depend on the Spark pipeline.

A training host installs torch and transformers, not a JVM and pyspark; ``slm_common`` is the lowest layer that
both sides share. An import of ``spark_jobs`` from below would make every training run pay for (or fail on) Spark.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOWER_PACKAGES = ("train", "model_surgery", "slm_common")
FORBIDDEN = ("spark_jobs", "pyspark")
ENTRY_MODULES = (
    "train",
    "train.ablate",
    "train.loop",
    "train.checkpoint",
    "train.config",
    "model_surgery",
    "slm_common.tokenizer",
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every absolute module name ``path`` imports, with its line: import statements, including those inside
    functions, and ``importlib.import_module``/``__import__`` calls with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def is_forbidden(module: str) -> bool:
    return module.split(".")[0] in FORBIDDEN


def test_scanner_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The scan below proves nothing if it misses an import form, so each form is checked on a sample."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import spark_jobs.pipeline\n"
        "from pyspark.sql import SparkSession\n"
        "def later():\n"
        "    from spark_jobs import session\n"
        "    importlib.import_module('spark_jobs.pack')\n"
        "    __import__('pyspark')\n"
        "from . import sibling\n"
        "import torch\n"
    )
    assert [name for _, name in imported_modules(sample) if is_forbidden(name)] == [
        "spark_jobs.pipeline",
        "pyspark.sql",
        "spark_jobs",
        "spark_jobs.pack",
        "pyspark",
    ]


@pytest.mark.parametrize("package", LOWER_PACKAGES)
def test_source_never_imports_the_spark_pipeline(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    offending = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in files
        for line, name in imported_modules(path)
        if is_forbidden(name)
    ]
    assert not offending, offending


def test_importing_train_and_surgery_loads_no_spark_module() -> None:
    """Transitive imports count too (a lower module importing a third-party one that imports pyspark), so the
    entry modules are imported in a fresh interpreter and its ``sys.modules`` is inspected."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {ENTRY_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
