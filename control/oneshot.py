"""Sending one parsed control command and printing its reply: shared by `bin/trader <command>`
and every line of the console.

Exit codes: 0 done; 1 the service refused or failed the request; 2 bad usage;
3 no service running. `health` returns 0 healthy, 1 degraded, 2 critical (Nagios style).
"""
from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, Protocol, TextIO, cast

from control import protocol as p
from control import render
from control.client import NotRunning
from control.spec import Spec
from core.config import Config

OK, FAILED, USAGE, NOT_RUNNING = 0, 1, 2, 3
FOLLOW_POLL_S = 0.5


class Caller(Protocol):
    """What sends a command: the socket client, or the offline reader of `trades`. Replies are
    the typed reply models of control/replies.py, read here by the command that asked."""

    def call(self, cmd: str, **args: Any) -> Any: ...


class OfflineTrades:
    """`trades` while no service runs: the same reply, read from the configured database."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def call(self, cmd: str, **args: Any) -> Any:
        from control.commands import masked_db_url
        from control.queries import trades_reply
        from persistence.db import Database
        from persistence.schema import current_revision, head_revision

        url = cast(str, self.cfg.database.url)  # load_config fills it in when unset
        db = Database(url, call_timeout_s=self.cfg.deadlines.db_call_s, pool_size=1)
        try:
            rev = current_revision(db.engine)
            if rev != head_revision():
                raise p.ProtocolError(p.NOT_FOUND, f"no service running, and the database "
                                      f"{masked_db_url(url)} has "
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


def execute(client: Caller, spec: Spec, ns: argparse.Namespace, out: TextIO,
            stop: threading.Event | None = None, cfg: Config | None = None) -> int:
    """Send one parsed command and print its reply; the exit code says how it went."""
    try:
        data: Any = client.call(spec.name, **spec.args(ns))
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


def _follow(client: Caller, spec: Spec, ns: argparse.Namespace, last_id: int | None, out: TextIO,
            stop: threading.Event) -> None:
    """Poll for events newer than the last one shown, until Ctrl-C (or `stop`)."""
    print("-- following; Ctrl-C to stop --", file=out, flush=True)
    try:
        while not stop.wait(FOLLOW_POLL_S):
            data: Any = client.call("events", **(spec.args(ns) | {"after_id": last_id or 0, "limit": 200}))
            for e in data.events:
                print(render.as_json(e) if ns.json else render.event_line(e), file=out, flush=True)
            last_id = data.last_id
    except KeyboardInterrupt:
        print(file=out)
