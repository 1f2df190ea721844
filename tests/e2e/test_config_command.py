"""`bin/trader config`: every key of the configuration models, with its type, default, current
value and description; the README's table is its output."""
from __future__ import annotations

import json
import subprocess
import typing
from pathlib import Path

from pydantic import BaseModel

from core.config import Config
from core.config_docs import markdown_table

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin/trader")


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every leaf key, walked independently of the code under test."""
    out = set()
    for name, f in model.model_fields.items():
        t = f.annotation
        if isinstance(t, type) and issubclass(t, BaseModel):
            out |= model_keys(t, f"{prefix}{name}.")
            continue
        out.add(prefix + name)
        args = typing.get_args(t)
        if typing.get_origin(t) is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            out |= model_keys(args[0], f"{prefix}{name}[].")
    return out


def test_config_json_lists_every_key_of_the_models_described(tmp_path):
    proc = subprocess.run([TRADER, "config", "--json", "--set", "risk.sizing=\"risk_pct\""], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    items = json.loads(proc.stdout)
    by_key = {i["key"]: i for i in items}
    assert set(by_key) == model_keys(Config) and len(items) == len(by_key)
    for i in items:
        assert i["type"] and i["description"], i
    assert by_key["risk.sizing"]["default"] == "fixed" and by_key["risk.sizing"]["current"] == "risk_pct"
    assert by_key["paper.taker_fee_pct"]["default"] == "0.05"


def test_one_key_and_a_typo(tmp_path):
    ok = subprocess.run([TRADER, "config", "risk.daily_loss_limit_usdt"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("risk.daily_loss_limit_usdt = 0\n")
    bad = subprocess.run([TRADER, "config", "risk.sizng"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "did you mean risk.sizing?" in bad.stderr


def test_the_readme_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- config-table:start")
    body = readme[readme.index("\n", start) + 1:readme.index("<!-- config-table:end -->")]
    assert body.rstrip("\n") == markdown_table(), "README table is stale: paste `bin/trader config --markdown`"
