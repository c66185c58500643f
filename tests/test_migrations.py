"""The schema's migrations: a database of the release before migrations (36979ef) is upgraded with
its rows intact, a fresh one is created at the newest revision, and the result is schema.py."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, MetaData, insert, inspect, select

from cli import main
from runtime.store import schema
from runtime.store.database import (
    BASELINE,
    UnknownRevision,
    alembic_config,
    connect,
    current_revision,
    ensure_schema,
    head_revision,
    open_database,
)
from tests.fixtures import schema_36979ef as previous

UNRUNNABLE_ERROR = (
    "queued before the upgrade to the new inbox: its body stayed in the old queue; "
    "drain the old queue with the previous version, or redeliver it from the tracker"
)
ROOT = Path(__file__).parents[1]
MONDAY = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def _previous_release_database(engine: Engine) -> None:
    """What the release before migrations left: its tables, deliveries in every state, an issue."""
    previous.metadata.create_all(engine)
    delivery = {"source": "github", "event_name": "issues", "processed_at": None}
    with engine.begin() as db:
        # Inserted out of order: the inbox numbers them in the order they were received.
        db.execute(
            insert(previous.deliveries),
            [
                {**delivery, "key": "github:c", "delivery_id": "c", "status": "queued",
                 "received_at": MONDAY + dt.timedelta(minutes=2)},
                {**delivery, "key": "github:a", "delivery_id": "a", "status": "processed",
                 "received_at": MONDAY, "processed_at": MONDAY + dt.timedelta(seconds=3)},
                {**delivery, "key": "github:b", "delivery_id": "b", "status": "received",
                 "received_at": MONDAY + dt.timedelta(minutes=1)},
            ],
        )  # fmt: skip
        db.execute(
            insert(previous.issues).values(
                ref="octo/repo#7",
                source="github",
                scope="octo/repo",
                key="7",
                last_state="triage",
                priority="P2",
                is_open=True,
                assignees=["mona"],
                labels=["bug", "P2"],
                context={"title": "Printer on fire"},
                next_due_at=MONDAY + dt.timedelta(hours=4),
                updated_at=MONDAY,
            )
        )
        db.execute(
            insert(previous.timeline),
            [
                {"ref": "octo/repo#7", "entry": {"type": "created", "at": MONDAY.isoformat()}},
                {"ref": "octo/repo#7", "entry": {"type": "state", "to": "triage"}},
            ],
        )
        db.execute(
            insert(previous.notifications).values(
                ref="octo/repo#7", target="response", cycle=0, threshold="warning", at=MONDAY
            )
        )
        db.execute(
            insert(previous.audit).values(
                at=MONDAY,
                delivery_id="a",
                source="github",
                issue="octo/repo#7",
                event="issues.opened",
                rule_id="intake.fields",
                sop="S1.2",
                passed=False,
                mode="enforce",
                reasons=["missing: impact"],
                actions=[{"type": "Comment"}],
                outcome="applied",
            )
        )


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), schema.metadata))


def _assert_upgraded_with_rows_intact(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    with engine.connect() as db:
        rows = db.execute(select(schema.deliveries).order_by(schema.deliveries.c.seq)).mappings().all()
        issue = db.execute(select(schema.issues)).mappings().one()
        entries = db.execute(select(schema.timeline.c.entry).order_by(schema.timeline.c.id)).scalars().all()
        audit = db.execute(select(schema.audit)).mappings().one()
        notified = db.execute(select(schema.notifications.c.threshold)).scalars().all()
        turns_and_writes = [*db.execute(select(schema.turns)), *db.execute(select(schema.writes))]
    assert [(r["key"], r["status"], r["error"]) for r in rows] == [
        ("github:a", "processed", None),
        ("github:b", "failed", UNRUNNABLE_ERROR),
        ("github:c", "failed", UNRUNNABLE_ERROR),
    ]
    assert [r["seq"] for r in rows] == sorted({r["seq"] for r in rows})
    processed = rows[0]
    assert processed["processed_at"].replace(tzinfo=dt.UTC) == MONDAY + dt.timedelta(seconds=3)
    assert (processed["issue"], processed["body"], processed["attempts"]) == ("", None, 0)
    assert issue["as_of"] is None
    assert (issue["last_state"], issue["labels"], issue["context"]) == (
        "triage",
        ["bug", "P2"],
        {"title": "Printer on fire"},
    )
    assert entries == [{"type": "created", "at": MONDAY.isoformat()}, {"type": "state", "to": "triage"}]
    assert (audit["rule_id"], audit["passed"], audit["reasons"]) == (
        "intake.fields",
        False,
        ["missing: impact"],
    )
    assert notified == ["warning"]
    assert turns_and_writes == []
    assert _differences(engine) == []


def test_a_database_of_the_previous_release_is_upgraded_with_its_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'sopguard.db'}")
    _previous_release_database(engine)
    assert current_revision(engine) == BASELINE

    with caplog.at_level(logging.INFO, logger="runtime.store.database"):
        change = ensure_schema(engine)

    assert (change.before, change.after) == (BASELINE, head_revision())
    upgraded = f"upgraded sqlite:///{tmp_path / 'sopguard.db'} from 0001 to {head_revision()}"
    assert str(change) == upgraded
    # What `serve` and `worker` log when the store they open at start needed the upgrade.
    assert [r.getMessage() for r in caplog.records if r.name == "runtime.store.database"] == [upgraded]
    _assert_upgraded_with_rows_intact(engine)


def test_the_upgrade_runs_on_postgresql(request: pytest.FixtureRequest) -> None:
    try:
        url = request.getfixturevalue("postgres_url")
    except pytest.FixtureLookupError:
        pytest.skip("no postgres_url fixture (tests/conftest.py provides it where PostgreSQL runs)")
    engine = connect(url)
    _drop_every_table(engine)
    try:
        _previous_release_database(engine)
        ensure_schema(engine)
        _assert_upgraded_with_rows_intact(engine)
    finally:
        _drop_every_table(engine)


def _drop_every_table(engine: Engine) -> None:
    tables = MetaData()
    tables.reflect(engine)
    tables.drop_all(engine)


def test_the_upgrade_can_be_undone_down_to_the_previous_release(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'sopguard.db'}")
    _previous_release_database(engine)
    ensure_schema(engine)

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), BASELINE)

    with engine.connect() as connection:
        assert list(compare_metadata(MigrationContext.configure(connection), previous.metadata)) == []
        keys = connection.execute(select(previous.deliveries.c.key, previous.deliveries.c.status)).all()
    assert sorted(keys) == [("github:a", "processed"), ("github:b", "failed"), ("github:c", "failed")]
    upgraded = f"upgraded sqlite:///{tmp_path / 'sopguard.db'} from 0001 to {head_revision()}"
    assert str(ensure_schema(engine)) == upgraded


def test_a_fresh_database_is_created_at_the_newest_revision_and_is_schema_py(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'sopguard.db'}")

    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) == {*schema.metadata.tables, "alembic_version"}
    assert _differences(engine) == []
    assert str(ensure_schema(engine)) == f"sqlite:///{tmp_path / 'sopguard.db'} already at {head_revision()}"


def test_the_migrations_replayed_from_nothing_give_schema_py(tmp_path: Path) -> None:
    """Replaying 0001..head (the path of a database of the previous release) ends where create_all does."""
    engine = connect(f"sqlite:///{tmp_path / 'sopguard.db'}")
    previous.metadata.create_all(engine)  # an empty database of the previous release

    ensure_schema(engine)

    assert _differences(engine) == []


@pytest.mark.parametrize("previous_release", [False, True], ids=["fresh", "previous-release"])
def test_processes_starting_together_change_the_schema_once(tmp_path: Path, previous_release: bool) -> None:
    """Each thread opens its own engine, so each is a separate SQLite connection, as processes are."""
    url = f"sqlite:///{tmp_path / 'sopguard.db'}"
    if previous_release:
        _previous_release_database(connect(url))
    starters = 4
    barrier = threading.Barrier(starters)
    errors: list[BaseException] = []
    changes = []

    def start() -> None:
        engine = connect(url)
        barrier.wait()
        try:
            changes.append(ensure_schema(engine))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(change.before != change.after for change in changes) == [False, False, False, True]
    engine = connect(url)
    with engine.connect() as db:
        versions = db.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    assert versions == [head_revision()]
    if previous_release:
        _assert_upgraded_with_rows_intact(engine)
    assert _differences(engine) == []


def test_two_sopguard_processes_upgrading_at_once_upgrade_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sopguard.db'}"
    _previous_release_database(connect(url))
    environment = {**os.environ, "SOPGUARD_DATABASE_URL": url}
    command_line = [sys.executable, "-c", "from cli import main; main()", "db", "upgrade"]

    processes = [
        subprocess.Popen(
            command_line, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], [err.decode() for _, err in outputs]
    assert sorted(out.decode() for out, _ in outputs) == [
        f"{url} already at {head_revision()}\n",
        f"upgraded {url} from 0001 to {head_revision()}\n",
    ]
    _assert_upgraded_with_rows_intact(connect(url))


def test_db_upgrade_and_db_current_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sopguard.db'}"
    runner = CliRunner()
    environment = {"SOPGUARD_DATABASE_URL": url}
    head = head_revision()

    assert "no database yet" in runner.invoke(main, ["db", "current"], env=environment).output
    _previous_release_database(connect(url))
    current = runner.invoke(main, ["db", "current"], env=environment)
    assert current.output == f"{url}: 0001, this version needs {head}: run `sopguard db upgrade`\n"

    upgraded = runner.invoke(main, ["db", "upgrade"], env=environment)
    assert (upgraded.exit_code, upgraded.output) == (0, f"upgraded {url} from 0001 to {head}\n")
    again = runner.invoke(main, ["db", "upgrade"], env=environment)
    assert again.output == f"{url} already at {head}\n"
    assert runner.invoke(main, ["db", "current"], env=environment).output == f"{url}: {head} (current)\n"


def test_the_data_directory_names_the_database_when_no_url_is_set(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"SOPGUARD_DATA_DIR": str(tmp_path)})

    assert result.output == f"created sqlite:///{tmp_path / 'sopguard.db'} at {head_revision()}\n"
    assert (tmp_path / "sopguard.db").exists()


def test_a_database_upgraded_by_a_newer_version_is_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sopguard.db'}"
    engine = open_database(url)
    with engine.begin() as db:
        db.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    runner, environment = CliRunner(), {"SOPGUARD_DATABASE_URL": url}

    upgrade = runner.invoke(main, ["db", "upgrade"], env=environment)
    current = runner.invoke(main, ["db", "current"], env=environment)

    assert upgrade.exit_code == 1
    assert "at schema revision 0099, which this version of sopguard" in upgrade.output
    assert (
        current.output
        == f"{url}: 0099, newer than this version of sopguard knows (its newest: {head_revision()})\n"
    )
    with pytest.raises(UnknownRevision):
        ensure_schema(engine)
    assert current_revision(engine) == "0099"
