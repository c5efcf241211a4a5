"""Leases (issue 12): background work that must run in exactly one of several servers sharing
a database (scheduling, sweeping blobs) is done by the server holding its lease

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'leases',
        sa.Column('name', sa.String(length=64), primary_key=True),
        sa.Column('holder', sa.String(length=128), nullable=False),
        sa.Column('expires', sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('leases')
