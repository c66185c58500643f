"""The Alembic environment of the service's database: `env.py`, the revision template and `versions/`.

It ships inside the package and is configured in code (`runtime.store.database.alembic_config`), so
no `alembic.ini` is needed where the service runs. To write a revision after changing schema.py,
start from what Alembic finds against a database at the newest revision, then edit it by hand
(batch mode for SQLite, nothing SQLite-only) and let ruff tidy it:

    .venv/bin/python -c "from alembic import command; from runtime.store.database import *
    c = alembic_config(); c.set_main_option('sqlalchemy.url', 'sqlite:///var/sopguard.db')
    open_database('sqlite:///var/sopguard.db'); command.revision(c, 'what changed', autogenerate=True, rev_id='0003')"
    .venv/bin/ruff check --fix runtime/store/migrations && .venv/bin/ruff format runtime/store/migrations

`tests/test_migrations.py` checks that the revisions, replayed, give exactly schema.py.
"""
