"""session parameters (issue 13): each session's `--key value` arguments, typed, in a table
the runs table sorts and filters on; filled for the sessions there are from their arguments.
And series by key, for sorting every session by one metric's summary.

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

from nsml.core import params


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        'session_params',
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=128), nullable=False),
        sa.Column('num', sa.Float(), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('session_id', 'key'),
    )
    op.create_index('ix_session_params_key_num', 'session_params', ['key', 'num'])
    op.create_index('ix_series_key', 'series', ['key'])
    # The sessions made before: their parameters from their arguments, as create_session does now.
    conn = op.get_bind()
    rows = []
    for session_id, args in conn.execute(sa.text("SELECT id, args FROM sessions ORDER BY id")):
        rows += [dict(session_id=session_id, key=k, num=num, text=text)
                 for k, (num, text) in params.storable(params.parse_args(args or "")).items()]
        if len(rows) >= 5000:
            conn.execute(table.insert(), rows)
            rows = []
    if rows:
        conn.execute(table.insert(), rows)


def downgrade() -> None:
    op.drop_index('ix_series_key', table_name='series')
    op.drop_index('ix_session_params_key_num', table_name='session_params')
    op.drop_table('session_params')
