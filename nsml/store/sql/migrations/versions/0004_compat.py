"""NSML compatibility (issue 8): dataset tags, board entries kept per metric, session attempts
(resume)

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- datasets (tags) ---
    # Dataset tags (a JSON list of '#word'); and, for the same CLI work, a session's requested
    # shared memory (run --shm-size) and when `rm -s` took it out of listings (kept in storage).
    with op.batch_alter_table('datasets') as batch:
        batch.add_column(sa.Column('tags', sa.Text(), nullable=False, server_default='[]'))
    with op.batch_alter_table('sessions') as batch:
        batch.add_column(sa.Column('shm_size', sa.BigInteger(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('removed', sa.Float(), nullable=True))
    # --- boards (metric changes) ---
    # How each score was computed (scoring key: metric, evaluator code, test split), the format
    # its prediction file was written in, and why re-scoring it under a new key failed; and a
    # submit session's batch size (submit -b), which its process is told.
    with op.batch_alter_table('submissions') as batch:
        batch.add_column(sa.Column('scoring', sa.String(length=96), nullable=False, server_default=''))
        batch.add_column(sa.Column('prediction_format', sa.String(length=8), nullable=False, server_default=''))
        batch.add_column(sa.Column('rescore_error', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('sessions') as batch:
        batch.add_column(sa.Column('batch_size', sa.Integer(), nullable=False, server_default='0'))
    # --- sessions (resume) ---
    # Which attempt of the session runs (`nsml resume` starts the next one under the same name)
    # and the checkpoint the latest resume started from ('' for a first attempt).
    with op.batch_alter_table('sessions') as batch:
        batch.add_column(sa.Column('attempt', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('resumed_from', sa.String(length=256), nullable=False, server_default=''))


def downgrade() -> None:
    # Reverse order of upgrade().
    # --- sessions (resume) --- (reverse)
    with op.batch_alter_table('sessions') as batch:
        batch.drop_column('resumed_from')
        batch.drop_column('attempt')
    # --- boards (metric changes) --- (reverse)
    with op.batch_alter_table('sessions') as batch:
        batch.drop_column('batch_size')
    with op.batch_alter_table('submissions') as batch:
        batch.drop_column('rescore_error')
        batch.drop_column('prediction_format')
        batch.drop_column('scoring')
    # --- datasets (tags) --- (reverse)
    with op.batch_alter_table('sessions') as batch:
        batch.drop_column('removed')
        batch.drop_column('shm_size')
    with op.batch_alter_table('datasets') as batch:
        batch.drop_column('tags')
    pass
