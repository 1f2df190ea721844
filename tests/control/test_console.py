"""The console as an operator meets it: a real `bin/trader console` in a pseudo-terminal
(pexpect), attached over the real socket to a real service on the paper venue."""
from __future__ import annotations

import os
import socket
import sys
from decimal import Decimal
from pathlib import Path

import pexpect

from core.position_types import Leg
from persistence.models import SignalRow
from tests.support.control_support import open_positions, venue_orders, venue_qty
from tests.support.helpers import SYM, wait_for

ROOT = Path(__file__).resolve().parents[2]
TRADER = str(ROOT / "bin" / "trader")
PROMPT = r"wave-trader\[(healthy|degraded|critical)( PAUSED)?\]>"


def spawn_console(sock: Path, history: Path) -> pexpect.spawn:
    env = dict(os.environ, PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", NO_COLOR="1")
    child = pexpect.spawn(TRADER, ["console", "--socket", str(sock), "--history", str(history)],
                          env=env, dimensions=(60, 230), encoding="utf-8", timeout=20, cwd=str(ROOT))
    child.logfile_read = sys.stdout if os.environ.get("WT_SHOW_CONSOLE") else None
    return child


def command(child: pexpect.spawn, line: str, expect: str) -> str:
    """Type a line, wait for `expect` and the next prompt; return what was printed between."""
    child.sendline(line)
    child.expect(expect)
    seen = child.before + child.after
    child.expect(PROMPT)
    return seen + child.before


def _signal(svc, signal_id: str) -> SignalRow:
    with svc.db.tx("db_read") as tx:
        return tx.get(SignalRow, signal_id)


def _trailing_orders(svc, symbol: str) -> list:
    return [o for o in venue_orders(svc, symbol).values() if o.leg is Leg.TRAILING]


def test_operator_session_status_positions_set_pause_close(control_service, tmp_path):
    svc, plane, _ = control_service()
    open_positions(svc, "w1", (SYM["BTC"], "long", 0.9), (SYM["ETH"], "short", 0.8))
    history = tmp_path / "history"
    c = spawn_console(plane.lock.path, history)
    c.expect("attached to wave-trader")
    c.expect(PROMPT)

    # Tab completes the command; the status screen shows coverage
    c.send("stat")
    c.send("\t")
    c.expect("us")
    c.sendline("")
    assert c.expect(["coverage: 2/2 trailing", "unknown command"]) == 0
    c.expect(PROMPT)

    table = command(c, "positions", "ETH/USDT:USDT")
    assert "BTC/USDT:USDT" in table and "trailing" in table and "epoch" in table and "P&L" in table

    # a callback for one symbol: that position's actor applies it, the other keeps its own
    out = command(c, "set callback 0.8 --symbol BTC", "callback set to 0.8")
    assert "BTC/USDT:USDT" in out
    wait_for(lambda: [o.callback_pct for o in _trailing_orders(svc, SYM["BTC"]) if o.status == "open"]
             == [Decimal("0.8")], what="BTC trailing stop re-placed at callback 0.8")
    assert [o.status for o in _trailing_orders(svc, SYM["BTC"]) if o.callback_pct == Decimal("0.5")] == ["cancelled"]
    assert [str(o.callback_pct) for o in _trailing_orders(svc, SYM["ETH"])] == ["0.5"]
    assert [o.status for o in _trailing_orders(svc, SYM["ETH"])] == ["open"]

    # pause: a new wave is recorded but not traded; resume: it trades again
    c.sendline("pause")
    c.expect("paused: no new waves")
    c.expect(r"wave-trader\[\w+ PAUSED\]>")
    open_positions(svc, "w-paused", (SYM["SOL"], "long", 0.9))
    assert _signal(svc, "w-paused-0").outcome == "skipped" and "paused" in _signal(svc, "w-paused-0").reason
    command(c, "resume", "resumed")
    open_positions(svc, "w-resumed", (SYM["XRP"], "long", 0.9))
    assert _signal(svc, "w-resumed-0").outcome == "protected"

    # close: exit at market, then its stop-loss and trailing stop come off the venue
    command(c, "close BTC", "closed at")
    assert venue_qty(svc, SYM["BTC"]) == 0
    btc = venue_orders(svc, SYM["BTC"])
    assert {o.leg: o.status for o in btc.values() if o.leg in (Leg.STOP, Leg.EXIT)} == {
        Leg.STOP: "cancelled", Leg.EXIT: "filled"}
    assert not [o for o in btc.values() if o.status == "open"]
    assert venue_qty(svc, SYM["ETH"]) != 0  # the other position is untouched

    assert "usage: close" in command(c, "help close", "usage: close")
    c.sendline("close-all")
    c.expect(r"close ALL 2 open positions at market\? type 'yes' to confirm:")
    command(c, "no", "close-all cancelled")
    assert venue_qty(svc, SYM["ETH"]) != 0
    command(c, "frobnicate", "unknown command 'frobnicate'")
    command(c, "waves", "w-resumed")
    c.sendeof()
    c.expect("detached")
    c.expect(pexpect.EOF)

    # history survives the session: Up brings back the last command
    assert "set callback 0.8 --symbol BTC" in history.read_text()
    c2 = spawn_console(plane.lock.path, history)
    c2.expect(PROMPT)
    c2.send("\x1b[A")
    c2.expect("waves")
    c2.sendline("")
    c2.expect("w-resumed")
    c2.expect(PROMPT)
    c2.sendeof()
    c2.expect(pexpect.EOF)


def test_console_says_clearly_when_no_service_runs(tmp_path):
    out = pexpect.run(f"{TRADER} console --socket {tmp_path / 'none.sock'}", withexitstatus=True,
                      encoding="utf-8", timeout=30, cwd=str(ROOT))
    text, status = out
    assert status == 3
    assert "no wave-trader service is running" in text and "bin/trader run" in text
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on: what a killed service leaves behind
    text, status = pexpect.run(f"{TRADER} status --socket {stale}", withexitstatus=True, encoding="utf-8",
                               timeout=30, cwd=str(ROOT))
    assert status == 3 and "stale socket" in text
