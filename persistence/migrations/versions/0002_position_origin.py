"""Positions remember their origin: opened for a signal, or adopted from the venue on recovery.

A position the venue holds but the database does not know is never dropped: recovery adopts
it (protects it, flags it for an operator) and this column says so. Existing rows were all
opened for signals, which the server default records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('positions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=16), nullable=False,
                                      server_default='signal'))


def downgrade() -> None:
    with op.batch_alter_table('positions', schema=None) as batch_op:
        batch_op.drop_column('origin')
