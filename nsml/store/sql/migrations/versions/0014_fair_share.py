"""fair share (issue 15): preemptible sessions, and the usage ledger that GPU-time accounting
and credits read (one row per ended attempt, kept when its session is removed).

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: SQLite's batch copy of `sessions` would cascade-delete
    # every row that references it (0013's note).
    op.add_column('sessions', sa.Column('preemptible', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        'usage_ledger',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('team', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('gpus', sa.Integer(), nullable=False),
        sa.Column('cpus', sa.Float(), nullable=False),
        sa.Column('memory', sa.BigInteger(), nullable=False),
        sa.Column('started', sa.Float(), nullable=False),
        sa.Column('ended', sa.Float(), nullable=False),
    )
    op.create_index('ix_usage_ledger_ended', 'usage_ledger', ['ended'])
    # Attempts that ended before this revision, as far as the sessions table still tells them
    # (each session's latest attempt; earlier ones were not recorded anywhere).
    op.execute("INSERT INTO usage_ledger (session_id, owner, team, gpus, cpus, memory, started, ended) "
               "SELECT id, owner, team, gpus, cpus, memory, started, ended FROM sessions "
               "WHERE started IS NOT NULL AND ended IS NOT NULL AND ended >= started")


def downgrade() -> None:
    op.drop_index('ix_usage_ledger_ended', table_name='usage_ledger')
    op.drop_table('usage_ledger')
    op.execute('ALTER TABLE sessions DROP COLUMN preemptible')
