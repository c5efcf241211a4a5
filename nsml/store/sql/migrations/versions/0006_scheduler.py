"""The scheduler's foundation (issue 11): a session's priority, time limit and GPU model, the
node it was placed on, and its supervisor's last heartbeat

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sessions') as batch:
        batch.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('time_limit', sa.Float(), nullable=True))
        batch.add_column(sa.Column('gpu_model', sa.String(length=64), nullable=False, server_default=''))
        batch.add_column(sa.Column('node', sa.String(length=64), nullable=False, server_default=''))
        batch.add_column(sa.Column('heartbeat', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions') as batch:
        for column in ('heartbeat', 'node', 'gpu_model', 'time_limit', 'priority'):
            batch.drop_column(column)
