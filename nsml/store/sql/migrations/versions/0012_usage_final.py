"""end-of-run usage samples (issue 14): a usage row may be the summary of a whole run taken by
the supervisor at its exit (CPU averaged over the run, peak memory), marked `final` so that the
charts can say so and thinning keeps it; every older row is a reading of one moment.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.add_column(sa.Column('final', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('usage', schema=None) as batch_op:
        batch_op.drop_column('final')
