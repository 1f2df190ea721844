"""The wave coordinator's epoch: one row that fences a replaced coordinator's writes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table('coordinator',
                            sa.Column('id', sa.Integer(), nullable=False),
                            sa.Column('epoch', sa.Integer(), nullable=False),
                            sa.Column('updated_ts', sa.Float(), nullable=False),
                            sa.PrimaryKeyConstraint('id'))
    # the one row exists from the start: two first coordinators never race to insert it
    op.bulk_insert(table, [{'id': 1, 'epoch': 0, 'updated_ts': 0.0}])


def downgrade() -> None:
    op.drop_table('coordinator')
