"""`bin/trader`: the operator's command line. It sits above every package: it parses, then hands
each subcommand to its owner (the service, the control plane, the backtest)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from loguru import logger

from core.config import ConfigError, Config, load_config
from service.logs import setup_logging


DB_FAILED = 5  # exit code: the database cannot be used (read-only, full, unreachable)
HALTED = 6  # exit code: the database lease was lost during the run and trading halted


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting (repeatable), e.g. --set paper.latency_ms=2000")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bin/trader", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the trader (embedded defaults: paper venue, SQLite, demo signals)")
    _common(run)
    run.add_argument("--waves", type=int, metavar="N", help="stop after N waves have final outcomes")
    run.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    run.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    db = sub.add_parser("db", help="database schema: upgrade or show the current revision")
    _common(db)
    db.add_argument("action", choices=["upgrade", "current"])
    replay = sub.add_parser("replay", help="rehearse a recorded JSON-lines file of waves on the paper venue "
                                           "(temporary database unless --set database.url=… is given)")
    _common(replay)
    replay.add_argument("file", metavar="FILE", help="one wave message per line (see README, Signals)")
    replay.add_argument("--json", action="store_true", help="print the summary as one JSON line instead of a table")
    replay.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    replay.add_argument("--restamp", action="store_true",
                        help="stamp each wave with its arrival time (default: its own ts, judged at that time)")
    replay.add_argument("--prices", metavar="DATA",
                        help="play recorded candles (as for backtest) instead of the random walk; "
                             "each wave enters at its own time; the report is the backtest's")
    chaos = sub.add_parser("chaos", help="paper waves under a fault mix; checks every invariant at the end")
    _common(chaos)
    chaos.add_argument("--waves", type=int, default=20, metavar="N", help="waves to run (default 20)")
    chaos.add_argument("--mix", default="default", help="fault mix: default, calm, venue-down, hangs, crashy")
    chaos.add_argument("--positions", type=int, metavar="N",
                       help="soak: run until N positions have opened (instead of --waves)")
    chaos.add_argument("--timeout", type=float, default=None, metavar="S",
                       help="give up after S seconds (default 300; a soak: 0.5 s per position, at least 300)")
    chaos.add_argument("--json", action="store_true", help="print the report as one JSON line")
    chaos.add_argument("--quiet", action="store_true", help="only warnings and errors on stderr")
    from backtest.cli import add_parser as add_backtest
    add_backtest(sub, _common)
    conf = sub.add_parser("config", help="every configuration key: type, default, current value, description")
    _common(conf)
    conf.add_argument("key", nargs="?", help="one key (risk.sizing) or a section (risk)")
    conf.add_argument("--json", action="store_true", help="a JSON list of {key, type, default, current, description}")
    conf.add_argument("--markdown", action="store_true", help="the README's configuration table")
    from control.cli import add_subcommands  # control plane: status, positions, close, console, …
    add_subcommands(sub, _common)
    return ap


def caller_dir() -> Path:
    """Where the operator ran bin/trader from (it changes into the checkout before Python starts)."""
    return Path(os.environ.get("WAVE_TRADER_CWD") or os.getcwd())


def from_caller(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else caller_dir() / p


def resolve_signals_file(cfg: Config) -> None:
    """`signals.source = file:PATH` (or a bare path) is the caller's, like any FILE argument;
    a missing file stops the start with the path that was tried."""
    src = cfg.signals.source
    if src == "demo" or src.startswith(("ws://", "wss://")):
        return
    given = src.removeprefix("file:")
    path = from_caller(given)
    if not path.is_file():
        raise ConfigError(f"signals.source: signals file not found: {path}"
                          + (f" ({given!r} relative to {caller_dir()})" if not Path(given).is_absolute() else ""))
    cfg.signals.source = f"file:{path}"


def main(argv: list[str] | None = None) -> int:
    """The command line; output cut short by a closed pipe (`bin/trader positions | head`) is
    not an error worth a traceback."""
    # Everything this process creates (database and its -wal/-shm, log and its rotations, paper
    # account, history) is owner-only whatever umask it inherited.
    os.umask(0o077)
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader is gone: send whatever Python still wants to flush into the void
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None):
        args.config = str(from_caller(args.config))
    if args.command == "replay":  # builds its own config: paper venue, throwaway database
        from trader.replay import replay
        return replay(args)
    if args.command == "backtest":  # no database, no venue: a simulated clock
        from backtest.cli import backtest
        return backtest(args)
    if args.command == "chaos":  # likewise, with a fault mix on top
        from service.chaos import chaos
        return chaos(args)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.command == "run":
            resolve_signals_file(cfg)
    except ConfigError as e:
        print(f"bin/trader: {e}", file=sys.stderr)
        return 2
    if args.command == "db":
        return _db(cfg, args.action)
    if args.command == "config":
        return _config(cfg, args)
    if getattr(args, "control_command", None):
        from control.cli import main as control_main
        return control_main(cfg, args)
    return _run(cfg, args)


def database_url(cfg: Config) -> str:
    """The database URL of a loaded configuration: loading fills it in (a SQLite file under
    run_dir) when it is unset, so only a configuration never validated lacks one."""
    url = cfg.database.url
    assert url is not None, "database.url is filled in when the configuration is loaded"
    return url


def _db(cfg: Config, action: str) -> int:
    from persistence.schema import current_revision, head_revision, migration_engine, upgrade

    engine = migration_engine(database_url(cfg), cfg.deadlines.db_call_s)
    if action == "upgrade":
        before = current_revision(engine)
        upgrade(engine)
        print(f"schema upgraded: {before or 'empty'} -> {current_revision(engine)}")
    else:
        cur, head = current_revision(engine), head_revision()
        print(f"current: {cur or 'empty'}  head: {head}  {'(up to date)' if cur == head else '(run: bin/trader db upgrade)'}")
    return 0


def _config(cfg: Config, args) -> int:
    import difflib

    from core.config_docs import keys, markdown_table, text_table

    if args.markdown:
        print(markdown_table())
        return 0
    items = keys(cfg)
    if args.key:
        wanted = [k for k in items if k.key == args.key or k.key.startswith((args.key + ".", args.key + "[]."))]
        if not wanted:
            near = difflib.get_close_matches(args.key, [k.key for k in items], n=3)
            print(f"bin/trader config: no key {args.key!r}" + (f"; did you mean {', '.join(near)}?" if near else ""),
                  file=sys.stderr)
            return 2
        items = wanted
    print(json.dumps([k.as_dict() for k in items], indent=2) if args.json else text_table(items))
    return 0


def _run(cfg: Config, args) -> int:
    if cfg.paper.prices.startswith("file:"):
        print("bin/trader run: paper.prices = \"file:…\" is a recorded path, played by "
              "`bin/trader replay WAVES --prices DATA` or `bin/trader backtest`; run takes \"random\" "
              "or \"live:binanceusdm|bybit\"", file=sys.stderr)
        return 2
    from persistence.lease import LeaseHeld
    from persistence.schema import SchemaOutOfDate
    from exchange.gateway import VenueError
    from service.app import Service
    from service.view import StatusReporter
    from persistence.db import database_problem, masked_url
    from sqlalchemy.exc import DBAPIError

    from core.files import UnsafePath, private_dir
    try:
        private_dir(cfg.run_dir)  # first: the log may live under it
    except (UnsafePath, OSError) as e:
        print(f"bin/trader: run_dir: {e}", file=sys.stderr)
        return 4
    try:
        setup_logging(cfg.log.level, cfg.log.file, quiet=args.quiet)
    except (UnsafePath, OSError) as e:
        print(f"bin/trader: cannot open the log file: {e}", file=sys.stderr)
        return 2
    from service.control_plane import ControlPlane
    from control.server import ServiceAlreadyRunning
    try:  # claim the control socket before touching the database or the venue
        plane = ControlPlane(cfg)
    except (ServiceAlreadyRunning, ValueError) as e:
        logger.error("{}", e)
        return 4
    try:
        svc = Service(cfg, metrics=plane.metrics)
    except LeaseHeld as e:  # the same exit status as a taken control socket: already running
        logger.error("{}", e)
        plane.stop()
        return 4
    except SchemaOutOfDate as e:
        logger.error("{}", e)
        plane.stop()
        return 3
    except (ConfigError, VenueError, UnsafePath) as e:  # missing keys, venue unreachable, a foreign file
        logger.error("cannot start: {}", e)
        plane.stop()
        return 2
    except DBAPIError as e:  # read-only, full, unreachable
        logger.error("cannot start: {}", database_problem(database_url(cfg), e))
        plane.stop()
        return DB_FAILED
    plane.attach(svc)
    interrupted = threading.Event()

    def on_sigint(signum, frame):
        if interrupted.is_set():
            print("\nbin/trader: second interrupt, exiting now (resting stops stay on the venue)", file=sys.stderr)
            os._exit(130)
        interrupted.set()
        svc.stopping.set()
        print("\nbin/trader: stopping — finishing in-flight work (Ctrl-C again to exit at once)", file=sys.stderr)

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    logger.info("wave-trader starting: venue={} db={} signals={}", cfg.exchange.name,
                masked_url(database_url(cfg)), cfg.signals.source)
    reporter = StatusReporter(svc, cfg.log.status_interval_s)
    plane.start()  # status, console and /healthz answer during recovery ("recovering N of M")
    try:
        svc.start()
    except DBAPIError as e:  # recovery writes first: a read-only or full database shows here
        logger.error("cannot start: {}", database_problem(database_url(cfg), e))
        plane.stop()
        svc.shutdown()
        return DB_FAILED
    reporter.start()
    t0 = time.monotonic()
    svc.wait_for_waves(args.waves)
    reporter.stop()
    plane.stop()
    stuck = svc.shutdown()
    summary = svc.summary() | {"seconds": round(time.monotonic() - t0, 3), "interrupted": interrupted.is_set(),
                               "abandoned_at_shutdown": len(stuck)}
    logger.info("stopped after {:.1f}s: {} waves, {} positions opened, coverage {:.0%}",
                summary["seconds"], summary["waves_completed"], summary["positions_opened"],
                summary["ts_coverage"])
    if args.json:
        print(json.dumps(summary, sort_keys=True), flush=True)
    if interrupted.is_set():
        return 130
    if svc.halted:
        print(f"bin/trader: {svc.halted}; held positions kept their stops", file=sys.stderr)
        return HALTED
    return 0 if args.waves is None or summary["waves_completed"] >= args.waves else 1


if __name__ == "__main__":
    sys.exit(main())
