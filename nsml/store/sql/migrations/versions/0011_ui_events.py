"""usability analytics (issue 14): dashboard interactions, recorded only when the server opted
in (--usage-analytics): kind of page, action, time; never a URL or a name.

Revision ID: 0011
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'ui_events',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('user', sa.String(length=64), nullable=False),
        sa.Column('page', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('ms', sa.Integer(), nullable=True),
    )
    op.create_index('ix_ui_events_at', 'ui_events', ['at'])


def downgrade() -> None:
    op.drop_index('ix_ui_events_at', table_name='ui_events')
    op.drop_table('ui_events')
