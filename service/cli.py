"""`bin/trader`: the operator's command line."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from loguru import logger

from core.config import ConfigError, Config, load_config
from service.logs import setup_logging


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
    from control.cli import add_subcommands  # control plane: status, positions, close, console, …
    add_subcommands(sub, _common)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "replay":  # builds its own config: paper venue, throwaway database
        from service.replay import replay
        return replay(args)
    if args.command == "chaos":  # likewise, with a fault mix on top
        from service.chaos import chaos
        return chaos(args)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"bin/trader: {e}", file=sys.stderr)
        return 2
    if args.command == "db":
        return _db(cfg, args.action)
    if getattr(args, "control_command", None):
        from control.cli import main as control_main
        return control_main(cfg, args)
    return _run(cfg, args)


def _db(cfg: Config, action: str) -> int:
    from persistence.schema import current_revision, head_revision, migration_engine, upgrade

    engine = migration_engine(cfg.database.url, cfg.deadlines.db_call_s)
    if action == "upgrade":
        before = current_revision(engine)
        upgrade(engine)
        print(f"schema upgraded: {before or 'empty'} -> {current_revision(engine)}")
    else:
        cur, head = current_revision(engine), head_revision()
        print(f"current: {cur or 'empty'}  head: {head}  {'(up to date)' if cur == head else '(run: bin/trader db upgrade)'}")
    return 0


def _run(cfg: Config, args) -> int:
    from persistence.schema import SchemaOutOfDate
    from exchange.gateway import VenueError
    from service.app import Service
    from service.view import StatusReporter

    setup_logging(cfg.log.level, cfg.log.file, quiet=args.quiet)
    from control.plane import ControlPlane
    from control.server import ServiceAlreadyRunning
    try:  # claim the control socket before touching the database or the venue
        plane = ControlPlane(cfg)
    except (ServiceAlreadyRunning, ValueError) as e:
        logger.error("{}", e)
        return 4
    try:
        svc = Service(cfg)
    except SchemaOutOfDate as e:
        logger.error("{}", e)
        plane.stop()
        return 3
    except (ConfigError, VenueError) as e:  # missing keys, venue unreachable at start
        logger.error("cannot start: {}", e)
        plane.stop()
        return 2
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
                cfg.database.url.split("@")[-1], cfg.signals.source)
    reporter = StatusReporter(svc, cfg.log.status_interval_s)
    svc.start()
    plane.start()
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
    return 0 if args.waves is None or summary["waves_completed"] >= args.waves else 1


if __name__ == "__main__":
    sys.exit(main())
