"""The guard rails bin/test runs first (bin/lint) fail on a violation of each, and pass without one.

Each test builds a tiny tree with the repository's own configuration (pyproject.toml, setup.cfg,
.importlinter) and its own bin/lint, one empty package per root package, and a `.venv` whose
tools are the real ones: so what is checked is the configuration and the wiring as committed,
on a tree small enough to lint in seconds.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PACKAGES = ("actors", "core", "exchange", "persistence", "service", "control", "signals", "backtest", "trader")
TOOLS = ("ruff", "mypy", "lint-imports")


def _branches(n: int) -> str:
    """A function of cyclomatic complexity n (n - 1 decisions)."""
    lines = [f"def branches_{n}(x: int) -> int:"]
    lines += [f"    if x == {i}:\n        return {i}" for i in range(n - 1)]
    lines.append("    return -1\n")
    return "\n".join(lines)


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A tree bin/lint can run in: the real config and scripts, empty packages plus `files`."""
    (root / "bin").mkdir(parents=True)
    for name in ("bin/lint", "bin/_venv.sh", "setup.cfg", "pyproject.toml", ".importlinter"):
        shutil.copy2(ROOT / name, root / name)
    for pkg in PACKAGES:
        (root / pkg).mkdir()
        (root / pkg / "__init__.py").write_text("")
    # supervisor.py is seen by import-linter only as something imported: as the real tree does.
    (root / "supervisor.py").write_text("")
    (root / "service" / "app.py").write_text("import supervisor  # noqa: F401\n")
    for name, text in files.items():
        (root / name).write_text(text)
    # A venv whose tools are this one's, stamped as bin/_venv.sh stamps an installed one, so
    # bin/lint finds it ready and installs nothing.
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for tool in ("python", *TOOLS):
        (venv_bin / tool).symlink_to(VENV_BIN / tool)
    stamp = hashlib.sha1((root / "setup.cfg").read_bytes() + (root / "pyproject.toml").read_bytes())
    (root / ".venv" / ".wave-trader-installed").write_text(f"{stamp.hexdigest()[:16]}-test\n")
    return root


def _lint(root: Path, mypy_cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPY_CACHE_DIR": str(mypy_cache)}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(root / "bin" / "lint")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory) -> Path:
    """One mypy cache for both runs: the standard library is analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.skipif(not all((VENV_BIN / t).exists() for t in TOOLS),
                    reason="the guard-rail tools come with the test extras (bin/test installs them)")
class TestGuardRails:
    def test_a_clean_tree_passes_every_rail(self, tmp_path, mypy_cache):
        root = _tree(tmp_path / "clean", {
            "signals/fine.py": _branches(15),  # at the complexity limit, not over it
            "service/loose.py": "def untyped(x):\n    return x\n",  # default settings outside core
            "core/typed.py": "def typed(x: int) -> int:\n    return x\n",
            "actors/uses_core.py": "from core import typed  # noqa: F401\n",
        })
        res = _lint(root, mypy_cache)
        assert res.returncode == 0, res.stdout + res.stderr

    def test_a_seeded_violation_of_each_rail_fails_bin_lint(self, tmp_path, mypy_cache):
        root = _tree(tmp_path / "seeded", {
            "signals/tangled.py": _branches(16),
            "service/wrong.py": "count: int = 'three'\n",
            "core/untyped.py": "def untyped(x):\n    return x\n",
            "core/impure.py": "import service  # noqa: F401\n",
            "persistence/upward.py": "import actors  # noqa: F401\n",
            "exchange/one.py": "from exchange import two  # noqa: F401\n",
            "exchange/two.py": "from exchange import one  # noqa: F401\n",
        })
        res = _lint(root, mypy_cache)
        out = res.stdout + res.stderr
        assert res.returncode != 0, out
        # ruff: the complexity limit
        assert "signals/tangled.py" in out and "C901" in out and "(16 > 15)" in out
        # mypy: a type error anywhere, and strict mode in core only
        assert 'service/wrong.py:1: error: Incompatible types in assignment' in out
        assert "core/untyped.py:1: error: Function is missing a type annotation" in out
        # import-linter: core is pure, I/O sits below the actors, no cycles
        assert "core imports nothing of ours BROKEN" in out and "core.impure -> service" in out
        assert "persistence.upward -> actors" in out
        assert "No cycles are allowed in exchange" in out
        assert "guard rails failed: ruff mypy lint-imports" in res.stderr
