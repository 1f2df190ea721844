"""One-shot control commands (`bin/trader status`, `bin/trader close BTC`, …) and `console`.

Exit codes: 0 done; 1 the service refused or failed the request; 2 bad usage;
3 no service running. `health` returns 0 healthy, 1 degraded, 2 critical (Nagios style).
"""
from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Callable, TextIO

from control import protocol as p
from control import render
from control.client import ControlClient, NotRunning, socket_path
from control.spec import SPECS, Spec, build_parser
from core.config import Config

OK, FAILED, USAGE, NOT_RUNNING = 0, 1, 2, 3
FOLLOW_POLL_S = 0.5


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


class OfflineTrades:
    """`trades` while no service runs: the same reply, read from the configured database."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def call(self, cmd: str, **args):
        from control.queries import trades_reply
        from persistence.db import Database

        from control.commands import masked_db_url
        from persistence.schema import current_revision, head_revision

        db = Database(self.cfg.database.url, call_timeout_s=self.cfg.deadlines.db_call_s, pool_size=1)
        try:
            rev = current_revision(db.engine)
            if rev != head_revision():
                raise p.ProtocolError(p.NOT_FOUND, f"no service running, and the database "
                                      f"{masked_db_url(self.cfg.database.url)} has "
                                      + ("no trader schema" if rev is None else
                                         f"schema {rev} (run: bin/trader db upgrade)"))
            a = p.TradesArgs.model_validate(args)
            sym = a.symbol and guess_symbol(a.symbol)
            return trades_reply(db, a, sym)
        finally:
            db.dispose()


def guess_symbol(text: str) -> str:
    """BTC, BTCUSDT, btc/usdt:usdt → BTC/USDT:USDT (without a venue to ask)."""
    t = text.strip().upper()
    return t if "/" in t else f"{t.removesuffix('USDT')}/USDT:USDT"


def execute(client: ControlClient, spec: Spec, ns: argparse.Namespace, out: TextIO,
            stop: threading.Event | None = None, cfg: Config | None = None) -> int:
    """Send one parsed command and print its reply; the exit code says how it went."""
    try:
        data = client.call(spec.name, **spec.args(ns))
        if getattr(ns, "json", False):
            text = render.as_json(data)
        elif getattr(ns, "csv", False):
            text = render.trades_csv(data)
        else:
            text = render.render(data, wide=getattr(ns, "wide", False))
        print(text, file=out, flush=True)
        if spec.name == "events" and ns.follow:
            _follow(client, spec, ns, data.last_id, out, stop or threading.Event())
        if spec.name == "health":
            return {"healthy": OK, "degraded": 1, "critical": 2}[data.status]
        return OK
    except NotRunning as e:
        if spec.name == "trades" and cfg is not None:  # history needs no service: read the database
            return execute(OfflineTrades(cfg), spec, ns, out, stop)
        print(f"{e}", file=sys.stderr, flush=True)
        return NOT_RUNNING
    except p.ProtocolError as e:
        detail = "".join(f"\n  {d}" for d in e.details)
        print(f"{spec.name}: {e.message}{detail}", file=sys.stderr, flush=True)
        return FAILED


def _follow(client: ControlClient, spec: Spec, ns, last_id: int | None, out: TextIO,
            stop: threading.Event) -> None:
    """Poll for events newer than the last one shown, until Ctrl-C (or `stop`)."""
    print("-- following; Ctrl-C to stop --", file=out, flush=True)
    try:
        while not stop.wait(FOLLOW_POLL_S):
            data = client.call("events", **(spec.args(ns) | {"after_id": last_id or 0, "limit": 200}))
            for e in data.events:
                print(render.as_json(e) if ns.json else render.event_line(e), file=out, flush=True)
            last_id = data.last_id
    except KeyboardInterrupt:
        print("", file=out)
