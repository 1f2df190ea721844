"""Build the configured venue gateway. The only place that knows which venues exist."""
from __future__ import annotations

from pathlib import Path

from core.config import Config
from core.faults import FaultPlan
from exchange.faulty import FaultyGateway
from exchange.gateway import Gateway
from exchange.paper.engine import PaperEngine
from exchange.paper.gateway import PaperGateway
from exchange.paper.store import PaperStore
from exchange.paper.candles import Series, load as load_candles
from exchange.paper.prices import PriceSource, RandomWalk, first_prices, recorded_markets
from exchange.paper.universe import paper_markets, start_prices


def build_gateway(cfg: Config, faults: FaultPlan) -> Gateway:
    """The configured venue behind the fault injection of `faults`: rules may be added to the
    plan at any time (a test, a rehearsal), so it wraps the venue even while empty."""
    return FaultyGateway(venue_gateway(cfg), faults)


def venue_gateway(cfg: Config) -> Gateway:
    """The configured venue's own gateway, without injected faults."""
    if cfg.exchange.name == "paper":
        p = cfg.paper
        markets, prices = paper_markets(p.extra_symbols), start_prices(p.extra_symbols)
        recorded: dict[str, Series] | None = None
        if p.prices.startswith("file:"):  # a recorded path, played by the rehearsal itself
            recorded = load_candles(p.prices.removeprefix("file:"))
            markets = recorded_markets(recorded, markets, cfg.risk.position_notional_usdt)
            prices = first_prices(recorded)
        engine = PaperEngine(markets, prices, seed=p.seed, volatility=p.volatility,
                             slippage_bps=p.slippage_bps, store=paper_store(cfg),
                             taker_fee_pct=p.taker_fee_pct, maker_fee_pct=p.maker_fee_pct)
        gateway = PaperGateway(engine, latency_ms=p.latency_ms, jitter_ms=p.jitter_ms,
                               tick_interval_s=0 if recorded else p.tick_interval_ms / 1000,
                               seed=p.seed, prices=price_source(cfg, engine))
        gateway.recorded = recorded
        return gateway
    if cfg.exchange.name in ("binanceusdm", "bybit"):  # real venues through ccxt
        from exchange.ccxt.build import build_ccxt_gateway

        return build_ccxt_gateway(cfg)
    raise NotImplementedError(f"exchange {cfg.exchange.name!r} is not available in this build")


def paper_state_path(cfg: Config) -> Path | None:
    """Where the paper account lives: `paper.state_file`, else `<run_dir>/paper-venue.db`;
    None when it is kept in memory (`""`) or the venue is not the paper one."""
    path = cfg.paper.state_file
    if cfg.exchange.name != "paper" or path == "":
        return None
    return Path(cfg.run_dir) / "paper-venue.db" if path is None else Path(path)


def paper_store(cfg: Config) -> PaperStore | None:
    """The paper venue's own state file (a separate system from our database), if any."""
    path = paper_state_path(cfg)
    return None if path is None else PaperStore(path, timeout_s=cfg.deadlines.db_call_s)


def price_source(cfg: Config, engine: PaperEngine) -> PriceSource:
    """What moves the paper venue's prices on its feed thread (`paper.prices`); a live
    stream's first prices are the engine's before anything trades."""
    p, x = cfg.paper, cfg.exchange
    if p.prices.startswith("live:"):
        from exchange.paper.live import LivePrices

        live = LivePrices(p.prices.removeprefix("live:"), list(engine.markets), api_url=x.api_url,
                          ws_url=x.ws_url, poll_interval_s=x.poll_interval_ms / 1000,
                          timeout_s=cfg.deadlines.venue_call_s).start()
        live.advance(engine, 0.0)
        return live
    return RandomWalk()
