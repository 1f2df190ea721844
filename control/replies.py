"""Typed reply data, one model per command (shared by server, client, console and `--json`).

Prices, quantities and P&L are Decimals (strings on the wire); times are unix seconds or
durations in seconds. Nothing here ever carries configuration secrets.
"""
from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- shared pieces ------------------------------------------------------------------------


class PositionOut(_Reply):
    id: str
    symbol: str
    side: str
    phase: str
    epoch: int
    qty: Decimal | None = None
    entry: Decimal | None = None
    last: Decimal | None = None
    stop: Decimal | None = None
    trailing: str = "-"  # human summary: armed at X / trailing, level Y / -
    pnl: Decimal | None = None  # USDT: unrealized at the last price (open), realized net of fees (closed)
    pnl_pct: Decimal | None = None  # of the entry notional
    qty_usdt: Decimal | None = None  # entry notional
    activation_pct: Decimal
    callback_pct: Decimal
    stop_loss_pct: Decimal
    live: bool = True  # False: the actor did not answer in time; figures are the last persisted
    needs_attention: bool = False


class EventOut(_Reply):
    id: int
    ts: float
    kind: str
    position_id: str | None = None
    symbol: str | None = None  # of its position
    wave_id: str | None = None
    epoch: int | None = None
    data: dict = {}


class OrderOut(_Reply):
    cid: str
    leg: str
    side: str
    qty: Decimal
    status: str
    epoch: int
    stop_price: Decimal | None = None
    activation: Decimal | None = None
    callback_pct: Decimal | None = None
    avg_price: Decimal | None = None
    fee: Decimal | None = None  # commission on its fill, USDT
    reason: str | None = None


class VenueOrderOut(_Reply):
    cid: str
    leg: str
    status: str
    stop_price: Decimal | None = None


class MoneyOut(_Reply):
    """USDT. Realized is net of fees, from the fills of closed positions; unrealized is the
    open positions at the latest price; balance and equity are the venue's own figures."""

    realized: Decimal
    realized_today: Decimal
    fees: Decimal
    fees_today: Decimal
    trades: int
    trades_today: int
    unrealized: Decimal
    balance: Decimal | None = None
    equity: Decimal | None = None
    balance_age_s: float | None = None  # None: the venue never answered
    timezone: str = "UTC"  # what "today" means
    day_start: float


class LimitsOut(_Reply):
    daily_loss_limit_usdt: Decimal | None  # None: no limit
    halted: bool  # the limit was hit today: no new waves
    reason: str | None = None
    lifted_today: bool = False  # an operator resumed past it
    cooldown_after_stop_s: float = 0
    cooldowns: dict[str, float] = {}  # symbol -> seconds left


class TradeOut(_Reply):
    id: str
    symbol: str
    side: str
    qty: Decimal
    entry: Decimal
    exit: Decimal | None  # None: closed by the supervisor without a known fill
    gross: Decimal | None
    fees: Decimal | None
    net: Decimal | None
    pct: Decimal | None
    reason: str | None
    wave_id: str
    opened_ts: float
    closed_ts: float | None
    duration_s: float | None


class TradesReply(_Reply):
    trades: list[TradeOut]
    count: int
    gross: Decimal
    fees: Decimal
    net: Decimal
    wins: int


class UnprotectedOut(_Reply):
    id: str
    symbol: str
    seconds: float


# ---- per command ----------------------------------------------------------------------------


class HealthReply(_Reply):
    status: str  # healthy | degraded | critical
    reasons: list[str]
    open: int
    protected: int  # a stop-loss rests at the venue
    trailing: int  # stop-loss and trailing stop established
    coverage: float  # trailing / open (1.0 with nothing open)
    unprotected: list[UnprotectedOut]
    restarts: int
    recent_restarts: int
    escalations: int
    abandoned_alive: int
    venue_p50_ms: float | None = None
    venue_p99_ms: float | None = None
    venue_calls: int = 0
    venue_errors: int = 0
    db_p50_ms: float | None = None
    db_p99_ms: float | None = None
    db_ok: bool = True
    paused: bool = False
    recovering: str | None = None  # start-up recovery still running: "recovering N of M positions (…)"
    halted: str | None = None  # trading stopped for good (the database lease was lost)
    loss_limit_hit: bool = False  # the daily loss limit was hit: no new waves (reported, not degraded)


class StatusReply(_Reply):
    version: str
    pid: int
    uptime_s: float
    paused: bool
    venue: str
    markets: int
    venue_clock_offset_ms: int | None = None  # local clock minus the venue's (real venues)
    last_tick_age_s: float | None
    database: str  # backend and location, password masked
    db_ping_ms: float | None
    db_error: str | None
    children: int
    waves_completed: int
    waves_rejected: int
    waves_in_progress: int
    defaults: dict[str, Decimal]  # stop_loss_pct, activation_pct, callback_pct for new positions
    metrics_url: str | None
    socket: str
    health: HealthReply
    money: MoneyOut | None = None  # None: the database could not be read
    limits: LimitsOut | None = None
    waves: str = "taking waves"  # or "PAUSED (…)", "coordinator restarting …", "coordinator down: <reason>"


class PositionsReply(_Reply):
    positions: list[PositionOut]
    unrealized: Decimal | None = None  # sum of the open positions' P&L


class PositionDetailReply(_Reply):
    position: PositionOut
    signal_id: str
    wave_id: str
    trailing_mode: str
    activation_price: Decimal | None
    trailing_activated: bool
    best_price: Decimal | None
    trail_level: Decimal | None
    stop_cid: str | None
    trailing_cid: str | None
    pending_cid: str | None
    close_reason: str | None
    exit_price: Decimal | None
    attention_reason: str | None
    opened_ts: float
    closed_ts: float | None
    orders: list[OrderOut]
    venue_orders: list[VenueOrderOut] | None  # what the venue holds for this position right now
    venue_error: str | None
    events: list[EventOut]


class WaveOut(_Reply):
    id: str
    status: str
    source: str
    received_ts: float
    completed_ts: float | None
    n_signals: int
    outcomes: dict[str, int]
    reason: str | None
    pnl: Decimal | None = None  # realized, net of fees, of this wave's closed positions
    closed: int = 0  # of its positions, how many have closed


class SignalOut(_Reply):
    id: str
    rank: int
    symbol: str
    side: str
    score: Decimal | None
    outcome: str | None
    reason: str | None
    position_id: str | None
    pnl: Decimal | None = None  # its position's realized P&L net of fees, once closed


class WavesReply(_Reply):
    waves: list[WaveOut]


class WaveReply(_Reply):
    wave: WaveOut
    signals: list[SignalOut]


class TargetResult(_Reply):
    id: str
    symbol: str
    result: str
    phase: str | None = None


class ActionReply(_Reply):
    message: str
    targets: list[TargetResult] = []
    paused: bool | None = None
    defaults: dict[str, Decimal] | None = None


class ChildOut(_Reply):
    key: str
    symbol: str
    epoch: int
    phase: str
    op: str | None
    op_left_s: float | None
    unprotected_s: float | None


class SupervisorReply(_Reply):
    children: list[ChildOut]
    restarts: int
    escalations: int
    fenced_writes: int
    abandoned: list[str]  # "key epoch N" of threads still alive
    escalated: dict[str, str]
    reprotect_max_s: float | None


class EventsReply(_Reply):
    events: list[EventOut]
    last_id: int | None
