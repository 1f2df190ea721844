"""Build the configured venue gateway. The only place that knows which venues exist."""
from __future__ import annotations

from pathlib import Path

from core.config import Config
from core.faults import FaultPlan
from exchange.gateway import Gateway
from exchange.paper.engine import PaperEngine
from exchange.paper.gateway import PaperGateway
from exchange.paper.store import PaperStore
from exchange.paper.universe import paper_markets, start_prices


def build_gateway(cfg: Config, faults: FaultPlan) -> Gateway:
    if cfg.exchange.name == "paper":
        p = cfg.paper
        engine = PaperEngine(paper_markets(p.extra_symbols), start_prices(p.extra_symbols),
                             seed=p.seed, volatility=p.volatility, slippage_bps=p.slippage_bps,
                             store=paper_store(cfg), taker_fee_pct=p.taker_fee_pct,
                             maker_fee_pct=p.maker_fee_pct)
        return PaperGateway(engine, latency_ms=p.latency_ms, jitter_ms=p.jitter_ms,
                            tick_interval_s=p.tick_interval_ms / 1000, faults=faults, seed=p.seed)
    if cfg.exchange.name in ("binanceusdm", "bybit"):  # real venues through ccxt (issue 4)
        from exchange.ccxt.build import build_ccxt_gateway

        return build_ccxt_gateway(cfg)
    raise NotImplementedError(f"exchange {cfg.exchange.name!r} is not available in this build")


def paper_store(cfg: Config) -> PaperStore | None:
    """The paper venue's own state file (a separate system from our database), if any."""
    path = cfg.paper.state_file
    if path == "":
        return None
    return PaperStore(Path(cfg.run_dir) / "paper-venue.db" if path is None else Path(path),
                      timeout_s=cfg.deadlines.db_call_s)
