"""Text from remote parties reaches logs and terminals escaped: a signal server cannot forge
a log line or send terminal escapes, and neither can a venue's error message."""
from __future__ import annotations

from hypothesis import given, strategies as st

from core.text import printable
from tests.support.helpers import wait_for
from tests.support.signal_server import SignalServer
from tests.support.trader_process import Trader

FORGED = "09:00:00.000 CRITICAL all positions closed by the operator"
HOSTILE = f"nope\n{FORGED}\r\x1b[2J\x1b]0;pwned\x07\u202eevil"


def test_a_signal_server_cannot_forge_log_lines_or_send_terminal_escapes(tmp_path):
    server = SignalServer()
    try:
        server.send_json({"op": "error", "reason": HOSTILE})
        with Trader(tmp_path, f"signals.source='{server.url}'") as t:
            log = tmp_path / "log" / "t.log"
            wait_for(lambda: log.exists() and "server error" in log.read_text(errors="replace"),
                     timeout=60, what="the server's error in the log")
            t.stop()
        seen = {"log": log.read_text(errors="replace"), "terminal": t.output()}
    finally:
        server.close()
    for where, text in seen.items():
        assert "server error: nope\\n09:00:00.000 CRITICAL" in text, where
        assert not any(line.startswith(FORGED[:21]) for line in text.splitlines()), where
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\r" not in text, where


def test_a_venue_message_is_escaped_before_it_becomes_a_reason():
    import ccxt.async_support as ccxt

    from exchange.ccxt.errors import classify

    err = classify(ccxt.InvalidOrder('binanceusdm {"code":-2021,"msg":"' + HOSTILE + '"}'), write=True)
    assert str(err).isprintable() and "\\n09:00" in str(err) and err.code == -2021


@given(st.text(), st.integers(2, 300))
def test_printable_is_printable_and_bounded(text, limit):
    out = printable(text, limit)
    assert out.isprintable() and len(out) <= limit
    if text.isprintable() and len(text) <= limit:
        assert out == text
