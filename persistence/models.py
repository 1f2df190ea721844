"""Tables. Prices and amounts are exact decimals on every backend; every row a position
writes carries its epoch; the event log is append-only. Timestamps are unix seconds (UTC)."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    JSON, Boolean, Float, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class DecimalText(TypeDecorator):
    """NUMERIC on PostgreSQL, text on SQLite (whose NUMERIC would round through float)."""

    impl = String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(38, 18))
        return dialect.type_descriptor(String(64))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value)
        return value if dialect.name == "postgresql" else format(value, "f")

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        # One canonical form on both backends: PostgreSQL's NUMERIC(38, 18) pads with zeros
        # ("0.123456700000000000"), which is equal but would reach logs and venues as such.
        value = Decimal(value)
        return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


class Base(DeclarativeBase):
    pass


class WaveRow(Base):
    __tablename__ = "waves"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    received_ts: Mapped[float] = mapped_column(Float)
    deadline_ts: Mapped[float] = mapped_column(Float)
    completed_ts: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)  # open | complete | rejected
    reason: Mapped[str | None] = mapped_column(Text)
    n_signals: Mapped[int] = mapped_column(Integer)


class SignalRow(Base):
    __tablename__ = "signals"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    wave_id: Mapped[str] = mapped_column(ForeignKey("waves.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    score: Mapped[Decimal | None] = mapped_column(DecimalText)
    rank: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(24), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    position_id: Mapped[str | None] = mapped_column(String(32))
    decided_ts: Mapped[float | None] = mapped_column(Float)


class PositionRow(Base):
    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("active_symbol", name="uq_positions_active_symbol"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    signal_id: Mapped[str] = mapped_column(String(128), index=True)
    wave_id: Mapped[str] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(64))
    active_symbol: Mapped[str | None] = mapped_column(String(64))  # set while open: one per symbol
    side: Mapped[str] = mapped_column(String(8))
    phase: Mapped[str] = mapped_column(String(24), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    qty: Mapped[Decimal | None] = mapped_column(DecimalText)
    entry_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    last_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    stop_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    stop_cid: Mapped[str | None] = mapped_column(String(40))
    trailing_cid: Mapped[str | None] = mapped_column(String(40))
    pending_cid: Mapped[str | None] = mapped_column(String(40))
    activation_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    trailing_activated: Mapped[bool] = mapped_column(Boolean, default=False)
    best_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    trail_level: Mapped[Decimal | None] = mapped_column(DecimalText)
    stop_loss_pct: Mapped[Decimal] = mapped_column(DecimalText)
    activation_pct: Mapped[Decimal] = mapped_column(DecimalText)
    callback_pct: Mapped[Decimal] = mapped_column(DecimalText)
    trailing_mode: Mapped[str] = mapped_column(String(16))
    notional: Mapped[Decimal] = mapped_column(DecimalText)
    close_reason: Mapped[str | None] = mapped_column(Text)
    exit_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    reported: Mapped[bool] = mapped_column(Boolean, default=False)
    # "signal": opened for a signal; "adopted": found at the venue on recovery, unknown to us
    origin: Mapped[str] = mapped_column(String(16), default="signal", server_default="signal")
    needs_attention: Mapped[bool] = mapped_column(Boolean, default=False)
    attention_reason: Mapped[str | None] = mapped_column(Text)
    opened_ts: Mapped[float] = mapped_column(Float)
    updated_ts: Mapped[float] = mapped_column(Float)
    closed_ts: Mapped[float | None] = mapped_column(Float, index=True)
    # realized P&L, written when the position closes (quote asset; pct of the entry notional)
    gross_pnl: Mapped[Decimal | None] = mapped_column(DecimalText)
    fees: Mapped[Decimal | None] = mapped_column(DecimalText)
    net_pnl: Mapped[Decimal | None] = mapped_column(DecimalText)
    pnl_pct: Mapped[Decimal | None] = mapped_column(DecimalText)


class OrderRow(Base):
    """Written *before* the order is sent (write-ahead intent), then updated with its fate."""

    __tablename__ = "orders"
    cid: Mapped[str] = mapped_column(String(40), primary_key=True)
    position_id: Mapped[str] = mapped_column(ForeignKey("positions.id"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(64))
    leg: Mapped[str] = mapped_column(String(1))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[Decimal] = mapped_column(DecimalText)
    stop_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    activation: Mapped[Decimal | None] = mapped_column(DecimalText)
    callback_pct: Mapped[Decimal | None] = mapped_column(DecimalText)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # intent | open | filled | cancelled | rejected | unknown | not_found | expired
    status: Mapped[str] = mapped_column(String(16), index=True)
    avg_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    filled_qty: Mapped[Decimal | None] = mapped_column(DecimalText)
    fee: Mapped[Decimal | None] = mapped_column(DecimalText)  # commission on the fill, quote asset
    reason: Mapped[str | None] = mapped_column(Text)
    created_ts: Mapped[float] = mapped_column(Float)
    updated_ts: Mapped[float] = mapped_column(Float)


class EventRow(Base):
    """Append-only log: nothing ever updates or deletes a row here."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_position_ts", "position_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(48))
    position_id: Mapped[str | None] = mapped_column(String(32))
    wave_id: Mapped[str | None] = mapped_column(String(64), index=True)
    epoch: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON, default=dict)


class CoordinatorRow(Base):
    """The wave coordinator's epoch: one row. Every coordinator write checks it in the same
    transaction, so a coordinator that was replaced (stuck, crashed, another process) writes
    nothing more once its successor has raised it."""

    __tablename__ = "coordinator"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    updated_ts: Mapped[float] = mapped_column(Float)
