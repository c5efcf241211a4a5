"""per-block extremes of metric series, for fast downsampled charts (nsml/store/sql/views.py);
an index for the newest-first session list

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'point_blocks',
        sa.Column('series_id', sa.Integer(), nullable=False),
        sa.Column('first_id', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('last_id', sa.BigInteger(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.Column('seen', sa.BigInteger(), nullable=False),
        sa.Column('step0', sa.Float(), nullable=True),
        sa.Column('step1', sa.Float(), nullable=True),
        sa.Column('wall0', sa.Float(), nullable=False),
        sa.Column('wall1', sa.Float(), nullable=False),
        sa.Column('lo_value', sa.Float(), nullable=False),
        sa.Column('lo_step', sa.Float(), nullable=True),
        sa.Column('lo_wall', sa.Float(), nullable=False),
        sa.Column('hi_value', sa.Float(), nullable=False),
        sa.Column('hi_step', sa.Float(), nullable=True),
        sa.Column('hi_wall', sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(['series_id'], ['series.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('series_id', 'first_id'),
    )
    op.create_index('ix_sessions_created', 'sessions', ['created', 'id'])


def downgrade() -> None:
    op.drop_index('ix_sessions_created', table_name='sessions')
    op.drop_table('point_blocks')
