"""Users, teams and one authorisation policy (issue 10): passwords and admins, API tokens of
their own (hashed, expiring, revocable), teams and their members, a session's team and
visibility, grants of private datasets, and the audit table

Revision ID: 0005
Revises: 0004
"""
import time

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.alter_column('token_sha256', existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column('password_hash', sa.String(length=256), nullable=False, server_default=''))
        batch.add_column(sa.Column('admin', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('default_team', sa.String(length=64), nullable=False, server_default=''))
    op.create_table(
        'tokens',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False, unique=True),
        sa.Column('label', sa.String(length=64), nullable=False, server_default=''),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('expires', sa.Float(), nullable=True),
        sa.Column('last_used', sa.Float(), nullable=True),
        sa.Column('revoked', sa.Float(), nullable=True),
    )
    op.create_index('ix_tokens_user_id', 'tokens', ['user_id'])
    # Each user's one token so far becomes their first API token; the first user (the one who
    # started the server) becomes its admin.
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('token_sha256', sa.String), sa.column('admin', sa.Boolean))
    tokens = sa.table('tokens', sa.column('user_id', sa.Integer), sa.column('sha256', sa.String),
                      sa.column('label', sa.String), sa.column('created', sa.Float))
    bind = op.get_bind()
    rows = bind.execute(sa.select(users.c.id, users.c.token_sha256).order_by(users.c.id)).all()
    for user_id, sha in rows:
        if sha:
            bind.execute(tokens.insert().values(user_id=user_id, sha256=sha, label='local', created=time.time()))
    if rows:
        bind.execute(users.update().where(users.c.id == rows[0][0]).values(admin=True))
    bind.execute(users.update().values(token_sha256=None))
    op.create_table(
        'teams',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('name', sa.String(length=64), nullable=False, unique=True),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('created', sa.Float(), nullable=False),
    )
    op.create_table(
        'team_members',
        sa.Column('team_id', sa.Integer(), sa.ForeignKey('teams.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), primary_key=True),
    )
    op.create_table(
        'dataset_grants',
        sa.Column('dataset_id', sa.Integer(), sa.ForeignKey('datasets.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('grantee', sa.String(length=72), primary_key=True),
    )
    op.create_table(
        'audit',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('at', sa.Float(), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('target', sa.String(length=256), nullable=False, server_default=''),
        sa.Column('detail', sa.Text(), nullable=False, server_default=''),
    )
    op.create_index('ix_audit_at', 'audit', ['at'])
    with op.batch_alter_table('sessions') as batch:
        batch.add_column(sa.Column('team', sa.String(length=64), nullable=False, server_default=''))
        batch.add_column(sa.Column('visibility', sa.String(length=8), nullable=False, server_default='team'))


def downgrade() -> None:
    with op.batch_alter_table('sessions') as batch:
        batch.drop_column('visibility')
        batch.drop_column('team')
    op.drop_index('ix_audit_at', 'audit')
    op.drop_table('audit')
    op.drop_table('dataset_grants')
    op.drop_table('team_members')
    op.drop_table('teams')
    users = sa.table('users', sa.column('id', sa.Integer), sa.column('token_sha256', sa.String))
    tokens = sa.table('tokens', sa.column('user_id', sa.Integer), sa.column('sha256', sa.String), sa.column('id', sa.Integer))
    bind = op.get_bind()
    for user_id, sha in bind.execute(sa.select(tokens.c.user_id, tokens.c.sha256).order_by(tokens.c.id.desc())).all():
        bind.execute(users.update().where(users.c.id == user_id).values(token_sha256=sha))
    op.drop_index('ix_tokens_user_id', 'tokens')
    op.drop_table('tokens')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('default_team')
        batch.drop_column('admin')
        batch.drop_column('password_hash')
