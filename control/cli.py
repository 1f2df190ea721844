"""One-shot control commands (`bin/trader status`, `bin/trader close BTC`, …) and `console`.

Exit codes (control/oneshot.py): 0 done; 1 the service refused or failed the request; 2 bad
usage; 3 no service running. `health` returns 0 healthy, 1 degraded, 2 critical (Nagios style).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from control.client import ControlClient, socket_path
from control.oneshot import USAGE, execute
from control.spec import SPECS, build_parser
from core.config import Config


def add_subcommands(sub, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Mount every control command, and `console`, on `bin/trader`'s subparsers."""
    for spec in SPECS.values():
        sp = sub.add_parser(spec.name, help=spec.summary.replace("%", "%%"), description=f"{spec.summary}. {spec.description}",
                            epilog=("examples: " + "; ".join(f"bin/trader {e}" for e in spec.examples))
                            if spec.examples else None)
        common(sp)
        sp.add_argument("--socket", metavar="PATH", help="control socket (default: <run_dir>/control.sock)")
        build_parser(spec, sp)
        sp.set_defaults(control_command=spec.name)
    c = sub.add_parser("console", help="interactive console attached to the running service",
                       description="An interactive console (completion, history, help) attached to the "
                                   "running service over its control socket.")
    common(c)
    c.add_argument("--socket", metavar="PATH", help="control socket (default: <run_dir>/control.sock)")
    c.add_argument("--history", metavar="FILE", help="history file (default: $WAVE_TRADER_HISTORY or "
                                                     "~/.local/state/wave-trader/console_history)")
    c.set_defaults(control_command="console")


def client_for(cfg: Config, socket_arg: str | None) -> ControlClient:
    path = Path(socket_arg) if socket_arg else socket_path(cfg)
    return ControlClient(path, timeout_s=cfg.control.request_timeout_s * 3 + 5)


def main(cfg: Config, args: argparse.Namespace) -> int:
    client = client_for(cfg, args.socket)
    if args.control_command == "console":
        from control.console import run_console

        return run_console(client, args.history)
    spec = SPECS[args.control_command]
    if spec.name == "close-all" and not args.yes:
        print("bin/trader close-all: refusing without --yes (it closes every open position); "
              "the console asks interactively", file=sys.stderr)
        return USAGE
    return execute(client, spec, args, sys.stdout, cfg=cfg)
