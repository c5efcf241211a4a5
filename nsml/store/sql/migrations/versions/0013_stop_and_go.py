"""stop-and-go (issue 15): whether a session's script can be paused (it bound a save and the
library handles SIGUSR1), its pending pause or preemption request and when it was made, and what
the library reported of it (the checkpoint saved for the pause, or why that save failed). On the
session row, so a request survives a server restart.

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

COLUMNS = ('pausable', 'pause_requested', 'pause_requested_at', 'pause_checkpoint', 'pause_error')


def upgrade() -> None:
    # Not batch mode: SQLite's batch copy of `sessions` would cascade-delete every row that
    # references it (0008's note); ADD COLUMN with a default is plain DDL on both databases.
    op.add_column('sessions', sa.Column('pausable', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column('sessions', sa.Column('pause_requested', sa.String(length=8), nullable=False, server_default=''))
    op.add_column('sessions', sa.Column('pause_requested_at', sa.Float(), nullable=True))
    op.add_column('sessions', sa.Column('pause_checkpoint', sa.String(length=256), nullable=False, server_default=''))
    op.add_column('sessions', sa.Column('pause_error', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL), for the same reason as the upgrade's ADD.
    for column in reversed(COLUMNS):
        op.execute(f'ALTER TABLE sessions DROP COLUMN {column}')
