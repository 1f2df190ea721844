"""The operator's command grammar, shared by the console and the one-shot `bin/trader` forms.

One argparse parser per command: the console parses a typed line with it, `bin/trader`
mounts the same parsers as subcommands, so `help close` and `bin/trader close --help` can
never disagree, and both turn a line into the same protocol request.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from control.protocol import PARAMS


class CommandError(Exception):
    """A line the grammar refuses; the message includes the usage."""


class _Exit(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: a typo must not end the console session."""

    def error(self, message: str):
        raise CommandError(f"{self.prog}: {message}\nusage: {self.format_usage().removeprefix('usage: ').strip()}")

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            print(message, end="")
        raise _Exit()


@dataclass(frozen=True)
class Spec:
    name: str
    summary: str
    description: str
    add: Callable[[argparse.ArgumentParser], None] = lambda p: None
    args: Callable[[argparse.Namespace], dict[str, Any]] = lambda ns: {}
    examples: tuple[str, ...] = ()
    targets: bool = False  # completes with open symbols / position ids
    confirm: bool = False  # asks before it acts
    extra: dict = field(default_factory=dict)


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="symbol (BTC/USDT:USDT, BTCUSDT or BTC) or position id")


def _wide(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wide", action="store_true", help="every column, whatever the terminal width")


_RELATIVE = {"m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: an ISO date or time (UTC unless it says otherwise: 2026-11-21,
    2026-11-21T10:00+01:00) or a span back from now (30m, 24h, 7d)."""
    t = text.strip()
    if t[:-1].isdigit() and t[-1:] in _RELATIVE:
        return (time.time() if now is None else now) - int(t[:-1]) * _RELATIVE[t[-1]]
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since {text!r}: expected a date (2026-11-21), a time "
                                         f"(2026-11-21T10:00) or a span (30m, 24h, 7d)") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def _trades(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=parse_since, metavar="WHEN",
                   help="closed at or after: 2026-11-21, 2026-11-21T10:00 (UTC) or 24h, 7d")
    p.add_argument("--symbol", help="one symbol (BTC, BTCUSDT or BTC/USDT:USDT)")
    p.add_argument("--csv", action="store_true", help="CSV with a header row (for a spreadsheet)")
    p.add_argument("--limit", type=int, default=10_000, help="the most recent N trades")
    _wide(p)


def _position(p: argparse.ArgumentParser) -> None:
    _target(p)
    p.add_argument("--events", type=int, default=20, help="how many recent events")


def _waves(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=20)
    _wide(p)


def _wave(p: argparse.ArgumentParser) -> None:
    p.add_argument("wave_id")
    _wide(p)


def _close_all(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="do not ask (required in scripts)")


def _set(p: argparse.ArgumentParser) -> None:
    p.add_argument("param", choices=list(PARAMS))
    p.add_argument("value")
    p.add_argument("--symbol", help="one position (symbol or id) instead of the defaults")


def _events(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--symbol", help="only this position (symbol or id)")
    p.add_argument("--limit", type=int, default=30)


SPECS: dict[str, Spec] = {s.name: s for s in [
    Spec("status", "service, venue, database, supervisor and coverage at a glance",
         "One screen for an incident: is the service trading, is every open position protected, "
         "are the venue and database answering, and what has the supervisor done."),
    Spec("positions", "table of open positions: entry, last, stop, P&L in USDT and %",
         "Live figures from each position's actor; a row marked '*' comes from the database because "
         "its actor did not answer in time (it may be stuck: see `supervisor`). The table fits the "
         "terminal; --wide adds the trailing state, epoch, size and id.", _wide),
    Spec("position", "one position in full: params, orders, what the venue holds, recent events",
         "Accepts a symbol (its open position, else the most recent) or a position id.",
         _position,
         lambda ns: {"target": ns.target, "events": ns.events}, ("position BTC", "position 3f2a9c01be77"), True),
    Spec("waves", "recent waves with their outcome counts and realized P&L", "Newest first.",
         _waves, lambda ns: {"limit": ns.limit}),
    Spec("wave", "one wave: every signal with its rank, outcome and reason",
         "Each signal has exactly one final outcome: protected, failed, emergency_closed, skipped or rejected.",
         _wave, lambda ns: {"wave_id": ns.wave_id},
         ("wave 2026-11-21T10:15",)),
    Spec("health", "healthy / degraded / critical, with the reasons",
         "Thresholds are in the [health] config section (README: Health and metrics). "
         "One-shot exit code: 0 healthy, 1 degraded, 2 critical, 3 no service."),
    Spec("pause", "stop taking new waves (open positions stay protected)",
         "New waves are recorded and their signals skipped with reason 'paused'. Survives a restart."),
    Spec("resume", "take new waves again", "Undoes `pause`."),
    Spec("close", "close one position at market; its stops are cancelled",
         "The position's own actor sends a reduce-only market exit, then cancels its resting stop-loss "
         "and trailing stop.", _target, lambda ns: {"target": ns.target}, ("close BTC", "close ETH/USDT:USDT"), True),
    Spec("close-all", "close every open position (asks for confirmation)",
         "Does not pause: run `pause` first if no new positions should open.",
         _close_all,
         lambda ns: {"confirm": ns.yes}, ("close-all", "close-all --yes"), confirm=True),
    Spec("set", "change activation / callback / stop-loss %, for one position or the defaults",
         "Without --symbol: the defaults for new positions, applied to every open one too, and kept "
         "across restarts. With --symbol: that position only. Limits are the config's: callback 0.1-20, "
         "stop-loss >0-<50, activation >0-<100. A stop only ever tightens (ratchet).",
         _set,
         lambda ns: {"param": ns.param, "value": ns.value, "symbol": ns.symbol},
         ("set callback 0.8 --symbol BTC", "set stop-loss 1.5"), extra={"params": list(PARAMS)}),
    Spec("restart", "supervised restart of one position's actor (new epoch, reconciled)",
         "Counts toward the restart intensity: too many in the window escalates (closes) the position.",
         _target, lambda ns: {"target": ns.target}, ("restart SOL",), True),
    Spec("supervisor", "children, epochs, current operations, restarts, escalations, abandoned threads",
         "op_left is the time before the watchdog restarts a child stuck in that operation."),
    Spec("events", "the event log (append-only); --follow to stream",
         "Newest last. With --follow, new events are printed as they happen until Ctrl-C.",
         _events,
         lambda ns: {"target": ns.symbol, "limit": ns.limit}, ("events -f", "events --symbol BTC")),
    Spec("trades", "closed positions: entry, exit, fees, P&L, reason, duration; with totals",
         "Every position that opened and closed, oldest first. P&L is in USDT, net of the fees the "
         "venue charged on the entry and exit fills; the total is the realized P&L of `status`.",
         _trades, lambda ns: {"since_ts": ns.since, "symbol": ns.symbol, "limit": ns.limit},
         ("trades --since 24h", "trades --symbol BTC --csv", "trades --json")),
]}


def build_parser(spec: Spec, parser: argparse.ArgumentParser | None = None, *, json_flag: bool = True):
    p = parser or Parser(prog=spec.name, description=f"{spec.summary}. {spec.description}",
                         epilog=("examples: " + "; ".join(spec.examples)) if spec.examples else None,
                         add_help=True)
    spec.add(p)
    if json_flag:
        p.add_argument("--json", action="store_true", help="print the reply as JSON")
    return p


def parse_line(argv: list[str]) -> tuple[Spec, argparse.Namespace] | None:
    """A console line → (spec, namespace); None when it only asked for --help."""
    if not argv:
        raise CommandError("empty command")
    spec = SPECS.get(argv[0])
    if spec is None:
        raise CommandError(f"unknown command {argv[0]!r}; type `help` for the list")
    try:
        return spec, build_parser(spec).parse_args(argv[1:])
    except _Exit:
        return None


def help_text(name: str | None = None) -> str:
    if name is None:
        width = max(len(n) for n in SPECS)
        lines = [f"  {n:<{width}}  {s.summary}" for n, s in SPECS.items()]
        return ("commands (`help <command>` for details, Tab completes, Ctrl-D quits):\n" + "\n".join(lines)
                + f"\n  {'help':<{width}}  this list\n  {'quit':<{width}}  leave the console (the service keeps running)")
    spec = SPECS.get(name)
    if spec is None:
        raise CommandError(f"no command {name!r}; type `help` for the list")
    return build_parser(spec).format_help()
