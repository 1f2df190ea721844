"""Money: the fee of every fill, and each closed position's realized P&L.

`orders.fee` is the commission the venue charged on that order's fill (NULL: unknown or not
filled). A position's realized P&L is written when it closes: gross (price difference × qty),
the fees of all its orders, net (gross - fees) and net as a percentage of the entry notional.
Positions closed before this revision keep NULLs: their fees were never recorded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00
"""
from alembic import op
import sqlalchemy as sa
import persistence.models


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_PNL = ('gross_pnl', 'fees', 'net_pnl', 'pnl_pct')


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fee', persistence.models.DecimalText(length=64), nullable=True))
    with op.batch_alter_table('positions', schema=None) as batch_op:
        for name in _PNL:
            batch_op.add_column(sa.Column(name, persistence.models.DecimalText(length=64), nullable=True))
        batch_op.create_index('ix_positions_closed_ts', ['closed_ts'])


def downgrade() -> None:
    with op.batch_alter_table('positions', schema=None) as batch_op:
        batch_op.drop_index('ix_positions_closed_ts')
        for name in _PNL:
            batch_op.drop_column(name)
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('fee')
