"""AutoML studies (issue 16): a study per parent session, its trials numbered once each.

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'studies',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('session_id', sa.Integer(), sa.ForeignKey('sessions.id', ondelete='CASCADE'), nullable=False, unique=True),
        sa.Column('config', sa.Text(), nullable=False),
        sa.Column('seed', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created', sa.Float(), nullable=False),
    )
    op.create_table(
        'study_trials',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('study_id', sa.Integer(), sa.ForeignKey('studies.id', ondelete='CASCADE'), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('params', sa.Text(), nullable=False),
        sa.Column('session_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('steps', sa.Text(), nullable=False, server_default='{}'),
        sa.Column('parent', sa.Integer(), nullable=True),
        sa.Column('created', sa.Float(), nullable=False),
        sa.UniqueConstraint('study_id', 'number'),
    )
    op.create_index('ix_study_trials_study_id', 'study_trials', ['study_id'])


def downgrade() -> None:
    op.drop_index('ix_study_trials_study_id', table_name='study_trials')
    op.drop_table('study_trials')
    op.drop_table('studies')
