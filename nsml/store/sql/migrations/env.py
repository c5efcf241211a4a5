"""Alembic environment: the connection comes from nsml.store.sql.engine.migrate()."""

from alembic import context

from nsml.store.sql.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` run by a developer
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
