"""The migrations produce exactly the tables the models describe."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from migrations.models import include_object, metadata


def test_models_and_migrations_agree(connection):
    ctx = MigrationContext.configure(connection, opts={"include_object": include_object,
                                                       "compare_type": True})
    assert compare_metadata(ctx, metadata) == []


def test_postgis_installed(connection):
    from sqlalchemy import text

    assert connection.execute(text("SELECT extname FROM pg_extension WHERE extname='postgis'")).scalar() == "postgis"
