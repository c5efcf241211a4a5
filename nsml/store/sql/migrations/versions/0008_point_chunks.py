"""metric points packed in chunks (issue 13): point_chunks replaces points and point_blocks;
series keep a summary (count, numbers, last, min, max) that every ingest updates

The points of a series are moved, in the order they were stored, into chunks built by the same
code as the ingest's (nsml/store/packed.py), and each series' summary is computed from them.
Downgrading moves them back into one row a point (the old code rebuilds its blocks on read).

Revision ID: 0008
Revises: 0007
"""
import math
from types import SimpleNamespace

from alembic import op
import numpy as np
import sqlalchemy as sa

from nsml.store import packed
from nsml.store.sql.metrics import _summarise


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def summary_columns() -> list[sa.Column]:
    return [
        sa.Column('numeric', sa.BigInteger(), nullable=False, server_default='0'),
        sa.Column('chunks', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('ordered', sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column('tail_step', sa.Float(), nullable=True),
        sa.Column('first_wall', sa.Float(), nullable=True),
        sa.Column('last_value', sa.Float(), nullable=True),
        sa.Column('last_step', sa.Float(), nullable=True),
        sa.Column('last_wall', sa.Float(), nullable=True),
        sa.Column('min_value', sa.Float(), nullable=True),
        sa.Column('min_step', sa.Float(), nullable=True),
        sa.Column('max_value', sa.Float(), nullable=True),
        sa.Column('max_step', sa.Float(), nullable=True),
    ]


FIELDS = [c.name for c in summary_columns()]


def upgrade() -> None:
    chunks = op.create_table(
        'point_chunks',
        sa.Column('series_id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.Column('nnum', sa.Integer(), nullable=False),
        sa.Column('nnum_step', sa.Integer(), nullable=False),
        sa.Column('nulls', sa.Integer(), nullable=False),
        sa.Column('step0', sa.Float(), nullable=True),
        sa.Column('step1', sa.Float(), nullable=True),
        sa.Column('wall0', sa.Float(), nullable=False),
        sa.Column('wall1', sa.Float(), nullable=False),
        sa.Column('lo_value', sa.Float(), nullable=True),
        sa.Column('lo_step', sa.Float(), nullable=True),
        sa.Column('lo_wall', sa.Float(), nullable=True),
        sa.Column('hi_value', sa.Float(), nullable=True),
        sa.Column('hi_step', sa.Float(), nullable=True),
        sa.Column('hi_wall', sa.Float(), nullable=True),
        sa.Column('blocks', sa.LargeBinary(), nullable=False),
        sa.Column('extra', sa.Text(), nullable=True),
        sa.Column('steps', sa.LargeBinary(), nullable=False),
        sa.Column('walls', sa.LargeBinary(), nullable=False),
        sa.Column('vals', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['series_id'], ['series.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('series_id', 'seq'),
    )
    for column in summary_columns():  # ALTER TABLE ADD COLUMN: a batch would copy `series`, cascading to its points
        op.add_column('series', column)
    conn = op.get_bind()
    series = sa.table('series', sa.column('id'), sa.column('count'), *(sa.column(f) for f in FIELDS))
    for (series_id,) in conn.execute(sa.text("SELECT id FROM series ORDER BY id")).all():
        rows = conn.execute(sa.text("SELECT step, walltime, value, value_json FROM points WHERE series_id = :s ORDER BY id"),
                            {"s": series_id}).all()
        summary = SimpleNamespace(count=0, numeric=0, chunks=0, ordered=True, tail_step=None, first_wall=None,
                                  last_value=None, last_step=None, last_wall=None, min_value=None, min_step=None,
                                  max_value=None, max_step=None)
        for start in range(0, len(rows), packed.CHUNK):
            part = rows[start:start + packed.CHUNK]
            steps = packed.as_column([r[0] for r in part])
            walls = np.array([r[1] or 0.0 for r in part], dtype=np.float64)
            extra, values = {}, []
            for i, (_, _, value, value_json) in enumerate(part):
                if value_json is None and isinstance(value, (int, float)) and math.isfinite(value):
                    values.append(value)
                else:  # JSON, or a NaN an old version kept (read as null then too; SQLite may give 'NaN')
                    extra[i] = 'null' if value_json is None else value_json
                    values.append(packed.NAN)
            values = np.array(values, dtype=np.float64)
            _summarise(summary, steps, walls, values)
            conn.execute(chunks.insert(), [packed.chunk_row(series_id, summary.chunks, steps, walls, values, extra)])
            summary.chunks += 1
        conn.execute(series.update().where(series.c.id == series_id)
                     .values(count=summary.count, **{f: getattr(summary, f) for f in FIELDS}))
    op.drop_table('point_blocks')
    op.drop_index('ix_points_series_step', table_name='points')
    op.drop_table('points')


def downgrade() -> None:
    points = op.create_table(
        'points',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True),
        sa.Column('series_id', sa.Integer(), sa.ForeignKey('series.id', ondelete='CASCADE'), nullable=False),
        sa.Column('step', sa.Float(), nullable=True),
        sa.Column('walltime', sa.Float(), nullable=False),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('value_json', sa.Text(), nullable=True),
    )
    op.create_index('ix_points_series_step', 'points', ['series_id', 'step'])
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
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT series_id, n, steps, walls, vals, extra FROM point_chunks ORDER BY series_id, seq"))
    for series_id, n, steps, walls, values, extra in rows.all():
        texts = packed.extra_values_text(extra)
        conn.execute(points.insert(), [
            dict(series_id=series_id, step=packed.none_if_nan(st), walltime=float(w),
                 value=None if i in texts else float(v), value_json=texts.get(i))
            for i, (st, w, v) in enumerate(zip(packed.unpack(steps, n), packed.unpack(walls, n), packed.unpack(values, n)))])
    op.drop_table('point_chunks')
    for name in reversed(FIELDS):
        op.drop_column('series', name)
