"""The package's shape: imports point downwards, and `import nsml` stays light."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ["fastapi", "starlette", "sqlalchemy", "alembic", "httpx", "typer", "rich", "uvicorn", "pydantic", "numpy"]


def test_import_contracts_hold():
    proc = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 1 kept, 0 broken" in proc.stdout


def test_import_nsml_loads_nothing_heavy():
    code = "import sys, json, nsml; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout))
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
