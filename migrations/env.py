"""Alembic environment: URL from our settings, every package's models (migrations/models.py), GeoAlchemy2's helpers."""
from __future__ import annotations

from alembic import context
from geoalchemy2 import alembic_helpers
from sqlalchemy import create_engine

from core.db import database_url
from migrations.models import include_object, metadata

config = context.config


def run_migrations_online() -> None:
    """Run migrations on a live connection (there is no offline mode)."""
    url = config.attributes.get("database_url") or database_url()
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_object=include_object,
            process_revision_directives=alembic_helpers.writer,
            render_item=alembic_helpers.render_item,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
