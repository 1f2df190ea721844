"""The wave coordinator's epoch: one row that fences a replaced coordinator's writes.

Revision ID: 0003_coord
Revises: 0002
Create Date: 2026-12-01 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_coord'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('coordinator',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('epoch', sa.Integer(), nullable=False),
                    sa.Column('updated_ts', sa.Float(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))


def downgrade() -> None:
    op.drop_table('coordinator')
