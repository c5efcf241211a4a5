"""session tags and notes (issue 14): tags a session's owner puts on it (`nsml tag`, the web),
queried as `tag:NAME`; and a markdown note per session beside its one-line memo.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'session_tags',
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('session_id', 'tag'),
    )
    op.create_index('ix_session_tags_tag', 'session_tags', ['tag'])
    # Not batch mode: SQLite's batch copy of `sessions` would cascade-delete every row that
    # references it (0008's note); ADD COLUMN with a default is plain DDL on both databases.
    op.add_column('sessions', sa.Column('note', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL), for the same reason as the upgrade's ADD.
    op.execute('ALTER TABLE sessions DROP COLUMN note')
    op.drop_index('ix_session_tags_tag', table_name='session_tags')
    op.drop_table('session_tags')
