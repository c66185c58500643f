"""The Alembic environment of the service's database: `env.py`, the revision template and `versions/`.

It ships inside the package and is configured in code (`runtime.store.database.alembic_config`), so
no `alembic.ini` is needed where the service runs.
"""
