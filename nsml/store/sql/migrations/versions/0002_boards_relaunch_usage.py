"""leaderboards, relaunched sessions, status history, usage samples

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('datasets') as batch:
        batch.add_column(sa.Column('metric', sa.String(length=16), nullable=False, server_default=''))
        batch.add_column(sa.Column('order', sa.String(length=4), nullable=False, server_default='desc'))
        batch.add_column(sa.Column('submit_interval', sa.Float(), nullable=False, server_default='0'))
    with op.batch_alter_table('sessions') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='normal'))
        batch.add_column(sa.Column('source', sa.String(length=160), nullable=False, server_default=''))
        batch.add_column(sa.Column('source_checkpoint', sa.String(length=256), nullable=False, server_default=''))
    op.create_table(
        'session_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_session_events_session_id', 'session_events', ['session_id'])
    op.create_table(
        'usage',
        sa.Column('session_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('cpu', sa.Float(), nullable=False),
        sa.Column('memory', sa.BigInteger(), nullable=False),
        sa.Column('gpus', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('session_id', 'at'),
    )
    op.create_table(
        'submissions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dataset', sa.String(length=32), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('session', sa.String(length=160), nullable=False),
        sa.Column('checkpoint', sa.String(length=256), nullable=False),
        sa.Column('test', sa.Boolean(), nullable=False),
        sa.Column('runner_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('step', sa.String(length=16), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('score', sa.Float(), nullable=True),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('finished', sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(['runner_id'], ['sessions.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_submissions_board', 'submissions', ['dataset', 'test', 'status'])


def downgrade() -> None:
    op.drop_index('ix_submissions_board', table_name='submissions')
    op.drop_table('submissions')
    op.drop_table('usage')
    op.drop_index('ix_session_events_session_id', table_name='session_events')
    op.drop_table('session_events')
    with op.batch_alter_table('sessions') as batch:
        batch.drop_column('source_checkpoint')
        batch.drop_column('source')
        batch.drop_column('kind')
    with op.batch_alter_table('datasets') as batch:
        batch.drop_column('submit_interval')
        batch.drop_column('order')
        batch.drop_column('metric')
