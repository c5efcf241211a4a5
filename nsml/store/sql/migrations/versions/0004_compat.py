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
    # --- boards (metric changes) ---
    # --- sessions (resume) ---
    pass


def downgrade() -> None:
    # Reverse order of upgrade().
    pass
