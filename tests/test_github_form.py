"""The exported issue form collects exactly the intake fields, and what it produces satisfies S1.2."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from cli import main
from config.loader import load_policy
from connector.github.form import issue_form
from policies.engine import evaluate
from policies.models import Event, EventKind, IssueSnapshot
from policies.text import sections
from tests.engine_support import GITHUB_REF, NOW, PERSON

POLICY = load_policy()


def _rendered_by_github(form: dict[str, object], answers: dict[str, str]) -> str:
    """The issue body GitHub writes from a submitted form: `### <label>` then the answer."""
    parts = []
    for element in form["body"]:  # type: ignore[attr-defined]
        if element["type"] == "markdown":
            continue
        label = element["attributes"]["label"]
        parts.append(f"### {label}\n\n{answers.get(element['id']) or '_No response_'}")
    return "\n\n".join(parts)


def test_the_form_has_one_field_per_intake_field_with_dropdowns_for_options() -> None:
    form = yaml.safe_load(issue_form(POLICY))

    fields = {e["id"]: e for e in form["body"] if e["type"] != "markdown"}
    assert list(fields) == [f.id for f in POLICY.intake.fields]
    for field in POLICY.intake.fields:
        element = fields[field.id]
        assert element["attributes"]["label"] == field.github.heading
        assert element["validations"]["required"] is field.required
        if field.options:
            assert element["type"] == "dropdown" and element["attributes"]["options"] == field.values
        else:
            assert element["type"] == ("textarea" if field.github.multiline else "input")
    assert form["labels"] == ["status/new"]


def test_a_submitted_form_satisfies_intake_and_sets_the_priority() -> None:
    form = yaml.safe_load(issue_form(POLICY))
    answers = {f.id: (f.values[-1] if f.options else f"answer for {f.id}") for f in POLICY.intake.fields}
    answers["impact"], answers["urgency"] = "Business outage", "Low"
    body = _rendered_by_github(form, answers)
    event = Event(
        source="github", kinds=frozenset({EventKind.OPENED}), delivery_id="f", actor=PERSON, issue=GITHUB_REF
    )

    decision = evaluate(
        POLICY, event, IssueSnapshot(ref=GITHUB_REF, body=body, fields=sections(body, "github")), NOW
    )

    intake = next(r for r in decision.results if r.rule_id == POLICY.intake.id)
    assert intake.passed
    assert any("priority/P2" in getattr(a, "add", ()) for a in decision.actions)


def test_an_unanswered_field_is_missing() -> None:
    form = yaml.safe_load(issue_form(POLICY))
    body = _rendered_by_github(form, {})
    event = Event(
        source="github", kinds=frozenset({EventKind.OPENED}), delivery_id="f", actor=PERSON, issue=GITHUB_REF
    )

    decision = evaluate(
        POLICY, event, IssueSnapshot(ref=GITHUB_REF, body=body, fields=sections(body, "github")), NOW
    )

    intake = next(r for r in decision.results if r.rule_id == POLICY.intake.id)
    assert set(intake.reasons) == {f.title.en for f in POLICY.intake.fields if f.required}


def test_export_command_writes_the_form_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "github-issue-form", "--output", str(tmp_path / "forms")])

    assert result.exit_code == 0, result.output
    written = (tmp_path / "forms" / "service-request.yml").read_text(encoding="utf-8")
    assert written == issue_form(POLICY)
