"""The shape of the code: the import contracts in pyproject.toml hold (doors never import each
other, areas never import doors, no cycles), `portal.db.load_models()` registers every model,
and migrations import no application code."""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TABLES = """
import json, sys
from portal.db import PlatformBase, TenantBase
print(json.dumps(sorted(PlatformBase.metadata.tables) + sorted(TenantBase.metadata.tables)))
"""


def python(script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_load_models_registers_every_table_of_every_module():
    everything = python(
        "import pkgutil, importlib, portal\n"
        "for info in pkgutil.walk_packages(portal.__path__, 'portal.'):\n"
        "    if not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n" + TABLES
    )
    registered = python("from portal.db import load_models\nload_models()\n" + TABLES)
    assert json.loads(registered) == json.loads(everything)
    assert "platform.outbox" in json.loads(registered)


def test_migrations_import_no_application_code():
    """A revision must keep doing what it did when it was written, whatever portal/ becomes:
    its versions import only Alembic, SQLAlchemy and the standard library."""

    for path in sorted(ROOT.glob("migrations/*/versions/*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] in {"portal", "jobs"} for name in names), (
                f"{path.relative_to(ROOT)} imports {names}"
            )
