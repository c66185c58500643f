"""The JSON Schema shipped beside the default policy is the one `sopguard schema` prints."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli import main

CONFIG = Path(__file__).parents[1] / "config"


def test_shipped_schema_matches_the_policy_models() -> None:
    printed = CliRunner().invoke(main, ["schema"])

    assert printed.exit_code == 0
    shipped = json.loads((CONFIG / "sop.schema.json").read_text(encoding="utf-8"))
    assert json.loads(printed.output) == shipped, "regenerate: sopguard schema > config/sop.schema.json"


def test_default_policy_points_editors_at_the_schema() -> None:
    first_line = (CONFIG / "sop.yaml").read_text(encoding="utf-8").splitlines()[0]

    assert first_line == "# yaml-language-server: $schema=sop.schema.json"
