"""Where the commands find the data directory: the same one from any folder, named, never created by a reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from config.settings import Settings, default_data_dir
from runtime.store import Store

CHECKOUT = Path(__file__).resolve().parent.parent
READERS = [["audit"], ["audit", "--failed"], ["report"], ["retry", "--all-failed"], ["sweep"]]


def _sopguard(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The command as a person runs it, in `cwd`, with none of the test run's SOPGUARD_ settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SOPGUARD_")} | env
    return subprocess.run(
        [sys.executable, "-c", "from cli import main; main()", *args],
        cwd=cwd,
        env=environment | {"PYTHONPATH": str(CHECKOUT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_default_data_directory_is_the_checkouts_var_whatever_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOPGUARD_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)

    assert default_data_dir() == CHECKOUT / "var"
    assert Settings().data_dir == CHECKOUT / "var"
    assert Settings().resolved_database_url == f"sqlite:///{CHECKOUT / 'var' / 'sopguard.db'}"


def test_a_relative_data_directory_is_made_absolute_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOPGUARD_DATA_DIR", "state")
    settings = Settings()
    monkeypatch.chdir(CHECKOUT)

    assert settings.data_dir == tmp_path / "state"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'state' / 'sopguard.db'}"


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_a_reading_command_refuses_without_a_database_and_creates_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOPGUARD_DATA_DIR", "state")
    database = tmp_path / "state" / "sopguard.db"

    result = CliRunner().invoke(main, command)

    assert result.exit_code == 1, result.output
    assert f"database: sqlite:///{database} (in SOPGUARD_DATA_DIR)" in result.stderr
    assert f"no sopguard database at sqlite:///{database}" in result.stderr
    assert "SOPGUARD_DATA_DIR" in result.stderr
    assert not database.exists()


def test_db_current_refuses_without_a_database_and_names_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["db", "current"], env={"SOPGUARD_DATA_DIR": str(tmp_path)})

    assert result.exit_code == 1
    assert f"sqlite:///{tmp_path / 'sopguard.db'}: no database yet" in result.output
    assert not (tmp_path / "sopguard.db").exists()


def test_an_empty_database_is_no_sopguard_database(tmp_path: Path) -> None:
    (tmp_path / "sopguard.db").touch()  # e.g. a file a mistyped sqlite3 command made

    result = CliRunner().invoke(main, ["audit"], env={"SOPGUARD_DATA_DIR": str(tmp_path)})

    assert result.exit_code == 1 and "no sopguard database at" in result.stderr


def test_audit_reads_the_database_and_says_which_on_stderr_only(tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path / 'sopguard.db'}")  # as `serve` leaves it

    result = CliRunner().invoke(main, ["audit", "--json"], env={"SOPGUARD_DATA_DIR": str(tmp_path)})

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == f"database: sqlite:///{tmp_path / 'sopguard.db'} (in SOPGUARD_DATA_DIR)\n"


def test_the_database_url_wins_and_is_shown_without_its_password(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["audit"],
        env={
            "SOPGUARD_DATA_DIR": str(tmp_path),
            "SOPGUARD_DATABASE_URL": "sqlite:///" + str(tmp_path / "x.db"),
        },
    )

    assert f"database: sqlite:///{tmp_path / 'x.db'} (SOPGUARD_DATABASE_URL)" in result.stderr
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "sopguard.db").exists()


def test_audit_run_from_another_folder_reads_the_same_database_as_from_the_checkout(tmp_path: Path) -> None:
    """What `sopguard audit` did before: from another folder it made and read an empty `./var` there."""
    elsewhere, data = tmp_path / "elsewhere", tmp_path / "data"
    elsewhere.mkdir()
    Store(f"sqlite:///{data / 'sopguard.db'}")

    from_checkout = _sopguard("audit", cwd=CHECKOUT, SOPGUARD_DATA_DIR=str(data))
    from_elsewhere = _sopguard("audit", cwd=elsewhere, SOPGUARD_DATA_DIR=str(data))
    by_default = _sopguard("audit", cwd=elsewhere)

    named = f"database: sqlite:///{data / 'sopguard.db'}"
    assert from_checkout.returncode == from_elsewhere.returncode == 0, from_elsewhere.stderr
    assert named in from_checkout.stderr and named in from_elsewhere.stderr
    assert f"database: sqlite:///{CHECKOUT / 'var' / 'sopguard.db'} (in the default data directory" in (
        by_default.stderr
    )
    assert list(elsewhere.iterdir()) == []
