"""Initial schema: waves, signals, positions (with epoch), orders (write-ahead), events.

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 19:41:57.204642
"""
from alembic import op
import sqlalchemy as sa
import persistence.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('kind', sa.String(length=48), nullable=False),
    sa.Column('position_id', sa.String(length=32), nullable=True),
    sa.Column('wave_id', sa.String(length=64), nullable=True),
    sa.Column('epoch', sa.Integer(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_position_ts', ['position_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_wave_id'), ['wave_id'], unique=False)

    op.create_table('positions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('signal_id', sa.String(length=128), nullable=False),
    sa.Column('wave_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('active_symbol', sa.String(length=64), nullable=True),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('phase', sa.String(length=24), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('qty', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('entry_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('last_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('stop_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('stop_cid', sa.String(length=40), nullable=True),
    sa.Column('trailing_cid', sa.String(length=40), nullable=True),
    sa.Column('pending_cid', sa.String(length=40), nullable=True),
    sa.Column('activation_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('trailing_activated', sa.Boolean(), nullable=False),
    sa.Column('best_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('trail_level', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('stop_loss_pct', persistence.models.DecimalText(length=64), nullable=False),
    sa.Column('activation_pct', persistence.models.DecimalText(length=64), nullable=False),
    sa.Column('callback_pct', persistence.models.DecimalText(length=64), nullable=False),
    sa.Column('trailing_mode', sa.String(length=16), nullable=False),
    sa.Column('notional', persistence.models.DecimalText(length=64), nullable=False),
    sa.Column('close_reason', sa.Text(), nullable=True),
    sa.Column('exit_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('reported', sa.Boolean(), nullable=False),
    sa.Column('needs_attention', sa.Boolean(), nullable=False),
    sa.Column('attention_reason', sa.Text(), nullable=True),
    sa.Column('opened_ts', sa.Float(), nullable=False),
    sa.Column('updated_ts', sa.Float(), nullable=False),
    sa.Column('closed_ts', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('active_symbol', name='uq_positions_active_symbol')
    )
    with op.batch_alter_table('positions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_positions_phase'), ['phase'], unique=False)
        batch_op.create_index(batch_op.f('ix_positions_signal_id'), ['signal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_positions_wave_id'), ['wave_id'], unique=False)

    op.create_table('waves',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('received_ts', sa.Float(), nullable=False),
    sa.Column('deadline_ts', sa.Float(), nullable=False),
    sa.Column('completed_ts', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('n_signals', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('waves', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waves_status'), ['status'], unique=False)

    op.create_table('orders',
    sa.Column('cid', sa.String(length=40), nullable=False),
    sa.Column('position_id', sa.String(length=32), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('leg', sa.String(length=1), nullable=False),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('qty', persistence.models.DecimalText(length=64), nullable=False),
    sa.Column('stop_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('activation', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('callback_pct', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('avg_price', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('filled_qty', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_ts', sa.Float(), nullable=False),
    sa.Column('updated_ts', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['position_id'], ['positions.id'], ),
    sa.PrimaryKeyConstraint('cid')
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_position_id'), ['position_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_orders_status'), ['status'], unique=False)

    op.create_table('signals',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('wave_id', sa.String(length=64), nullable=False),
    sa.Column('symbol', sa.String(length=64), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('score', persistence.models.DecimalText(length=64), nullable=True),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('position_id', sa.String(length=32), nullable=True),
    sa.Column('decided_ts', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['wave_id'], ['waves.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signals_outcome'), ['outcome'], unique=False)
        batch_op.create_index(batch_op.f('ix_signals_wave_id'), ['wave_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('signals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signals_wave_id'))
        batch_op.drop_index(batch_op.f('ix_signals_outcome'))

    op.drop_table('signals')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_status'))
        batch_op.drop_index(batch_op.f('ix_orders_position_id'))

    op.drop_table('orders')
    with op.batch_alter_table('waves', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_waves_status'))

    op.drop_table('waves')
    with op.batch_alter_table('positions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_positions_wave_id'))
        batch_op.drop_index(batch_op.f('ix_positions_signal_id'))
        batch_op.drop_index(batch_op.f('ix_positions_phase'))

    op.drop_table('positions')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_wave_id'))
        batch_op.drop_index('ix_events_position_ts')

    op.drop_table('events')
