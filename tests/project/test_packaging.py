"""`pip install .` ships the service: every package and the top-level `supervisor` module.

Installed offline (no index, no dependencies, no build isolation: the running environment's
setuptools and wheel build it) into a target directory, from a copy of the source tree so
the build leaves nothing behind in it, then imported from outside the source tree."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_SHIPPED = shutil.ignore_patterns(".*", "__pycache__", "*.egg-info", "build", "dist", "var", "run",
                                     "tests", "benchmarks")
TOP_LEVEL = ["supervisor", "actors", "core", "exchange", "persistence", "service", "signals", "control", "backtest", "trader"]
PROBE = """
import importlib, json, sys
mods = {n: importlib.import_module(n) for n in sys.argv[1:]}
from service.position_supervision import PositionSupervisor
from supervisor import Supervisor
assert issubclass(PositionSupervisor, Supervisor)
print(json.dumps({n: m.__file__ for n, m in mods.items()}))
"""


def _offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    return env | {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"} | extra


@pytest.mark.slow
def test_pip_install_ships_the_supervisor(tmp_path: Path) -> None:
    src, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(ROOT, src, ignore=NOT_SHIPPED)
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                            "--no-build-isolation", "--target", str(target), str(src)],
                           check=False, env=_offline_env(), capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, ("pip install . failed (the build needs setuptools and wheel: "
                                   f"pip install -e '.[test]'):\n{built.stdout}\n{built.stderr}")
    assert (target / "supervisor.py").is_file(), sorted(p.name for p in target.iterdir())
    ran = subprocess.run([sys.executable, "-c", PROBE, *TOP_LEVEL], check=False, cwd=tmp_path,
                         env=_offline_env(PYTHONPATH=str(target)), capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    files = json.loads(ran.stdout.splitlines()[-1])
    outside = {n: f for n, f in files.items() if not Path(f).resolve().is_relative_to(target.resolve())}
    assert not outside, f"imported from outside the installed copy: {outside}"
