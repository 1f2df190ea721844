"""`bin/fake-venue`: run one local venue (paper engine behind it) until Ctrl-C / SIGTERM.

Prints the REST base URL, then the websocket base URL (served on the same port), one per
line, so a script can take the REST URL from the first line alone.
"""
from __future__ import annotations

import argparse
import signal
import threading

from exchange.fakes.bybit_http import FakeBybit
from exchange.fakes.venues import FAKES
from exchange.paper.engine import PaperEngine
from exchange.paper.universe import paper_markets, start_prices


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fake-venue", description="A local venue shaped like a real one (paper engine).")
    ap.add_argument("--venue", choices=sorted(FAKES), default="binanceusdm")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    ap.add_argument("--latency-ms", type=float, default=0, help="added to every HTTP call")
    ap.add_argument("--tick-ms", type=float, default=500, help="random-walk step of every price; 0 = prices stand still")
    ap.add_argument("--volatility", type=float, default=0.0015)
    ap.add_argument("--clock-skew-ms", type=int, default=0,
                    help="the venue's clock minus this machine's: rehearse clock drift (-1021 / 10002)")
    ap.add_argument("--history-delay-ms", type=float, default=0,
                    help="bybit: closed orders reach order/history this late (documented as delayed)")
    args = ap.parse_args(argv)
    engine = PaperEngine(paper_markets(), start_prices(), seed=7, volatility=args.volatility)
    venue = FAKES[args.venue](engine, latency_ms=args.latency_ms, host=args.host, port=args.port)
    venue.clock_skew_ms = args.clock_skew_ms
    if isinstance(venue, FakeBybit):
        venue.history_delay_s = args.history_delay_ms / 1000
    print(venue.start(), flush=True)
    print(venue.ws_url, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.wait(args.tick_ms / 1000 if args.tick_ms > 0 else 3600):
        engine.step(args.tick_ms / 1000)
    venue.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
