"""The fixtures of tests/servers/plugin.py give real servers: PostgreSQL through SQLAlchemy and
psycopg, Redis through redis-py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis
import sqlalchemy as sa


@contextmanager
def engine_for(url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_postgres_url_is_a_real_postgresql_server(postgres_url: str) -> None:
    with engine_for(postgres_url) as engine, engine.connect() as connection:
        version = connection.execute(sa.text("SELECT version()")).scalar_one()
    assert version.startswith("PostgreSQL ")


def test_a_row_written_through_sqlalchemy_reads_back(fresh_postgres_url: str) -> None:
    metadata = sa.MetaData()
    notes = sa.Table(
        "notes",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    with engine_for(fresh_postgres_url) as engine:
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(notes.insert(), [{"body": "first"}, {"body": "second"}])
        with engine.connect() as connection:
            rows = connection.execute(sa.select(notes.c.id, notes.c.body).order_by(notes.c.id)).all()
    assert [tuple(row) for row in rows] == [(1, "first"), (2, "second")]


def test_a_fresh_database_is_empty_whatever_the_session_database_holds(
    postgres_url: str, fresh_postgres_url: str
) -> None:
    with engine_for(postgres_url) as engine, engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS session_marker (id integer)"))
    with engine_for(fresh_postgres_url) as engine:
        assert sa.inspect(engine).get_table_names() == []


def test_redis_url_is_a_real_redis_server(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set("sopguard:test", "stored")
        assert client.get("sopguard:test") == b"stored"
        assert re.fullmatch(r"\d+\.\d+\.\d+", client.info("server")["redis_version"])
    finally:
        client.close()
