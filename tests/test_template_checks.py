"""Comment templates are checked before they run, and one that fails at run time breaks only its rule."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from importlib import resources
from typing import get_args

import pytest

from config.loader import PolicyError, Problem, load_policy, parse_policy
from config.schema import MessageKind, Messages, Mode, Policy, Text
from config.template_checks import template_problems
from config.templates import KIND_VARIABLES, sample_variables, variable_names
from connector.github.events import to_event
from policies.engine import evaluate
from policies.ledger import IssueFacts
from policies.models import (
    Comment,
    CreateSubtasks,
    Decision,
    Event,
    EventKind,
    IssueSnapshot,
    PostComment,
    RememberState,
)
from policies.render import render
from policies.sla import Created, read_clocks, rules_for
from policies.sla_notices import due_notices
from tests.conftest import fixture_json
from tests.engine_support import GITHUB_REF, JIRA_REF, NOW, PERSON, complete_fields, move, snapshot_meeting

SOP_TEXT = resources.files("config").joinpath("sop.yaml").read_text(encoding="utf-8")
POLICY = load_policy()
PATH = "policy.yaml"


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times, expected once"
    return text.replace(old, new)


def position(text: str, needle: str, target: str) -> tuple[int, int]:
    """1-based line and column of `target` inside the one `needle` of `text`."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times"
    index = text.index(needle) + needle.index(target)
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, PATH)
    return caught.value.problems


# --- validation -----------------------------------------------------------------------------


def test_the_default_policy_has_no_template_problem() -> None:
    for kind, text in POLICY.messages.templates.items():
        for source in (text.en, text.zh_cn):
            assert source is not None
            assert template_problems(kind, source) == (), kind


def test_three_broken_templates_give_three_problems_at_the_broken_spot() -> None:
    broken = edit(
        SOP_TEXT,
        "{% for d in deadlines %}\n        - {{ d.target | capitalize }}",
        "{% for d in deadlinez %}\n        - {{ d.target | capitalize }}",
    )
    broken = edit(broken, "**{{ checklist }}**: {{ (", "**{{ checklist | titel }}**: {{ (")
    broken = edit(broken, "{{ remaining }} of working time", "{{ remaining } of working time")

    problems = problems_of(broken)

    expected = [
        (
            position(broken, "{% for d in deadlinez %}", "deadlinez"),
            "messages.templates.receipt.en: unknown variable 'deadlinez' (known: assumed, clause, "
            "deadlines, level, next_steps, reason, rule_id, sop); did you mean 'deadlines'?",
        ),
        (
            position(broken, "**{{ checklist | titel }}**", "titel"),
            "messages.templates.checklist-created.en: unknown filter 'titel' "
            "(only Jinja's built-in filters exist); did you mean 'title'?",
        ),
        (
            position(broken, "**The {{ target }} target of this {{ level }} issue is", "**"),
            "messages.templates.sla-warning.en: template syntax error: unexpected '}'",
        ),
    ]
    assert sorted((p.line, p.column, p.message) for p in problems) == sorted(
        (line, column, message) for (line, column), message in expected
    )
    assert all(p.path == PATH for p in problems)


@pytest.mark.parametrize(
    ("old", "new", "needle", "target", "fragment"),
    [
        pytest.param(
            'urgency "{{ reason.urgency }}" and',
            'urgency "{{ reason.urgensy }}" and',
            'urgency "{{ reason.urgensy }}" and',
            "urgensy",
            "receipt.en: cannot be rendered with the variables the engine passes: "
            "'dict object' has no attribute 'urgensy'",
            id="an attribute the engine's dicts do not have, in a branch taken only with a reason",
        ),
        pytest.param(
            'if created else "please make sure of each item before moving on."',
            'if created else ("please make sure" ~ (1 / 0))',
            '("please make sure" ~ (1 / 0))',
            "",
            "checklist-created.en: cannot be rendered with the variables the engine passes: "
            "ZeroDivisionError: division by zero",
            id="an error only when created is false",
        ),
        pytest.param(
            "{% if v.details %}: {{ v.details | join",
            "{% if v.details is emtpy %}: {{ v.details | join",
            "{% if v.details is emtpy",
            "emtpy",
            "transition-rejected.en: unknown test 'emtpy' (only Jinja's built-in tests exist)",
            id="an unknown test",
        ),
    ],
)
def test_a_template_is_rendered_with_every_switch_of_the_engine_variables(
    old: str, new: str, needle: str, target: str, fragment: str
) -> None:
    broken = edit(SOP_TEXT, old, new)

    (problem,) = problems_of(broken)

    line, column = position(broken, needle, target or needle)
    if not target:  # a render-time error: Jinja knows the line only
        column = len(broken.splitlines()[line - 1]) - len(broken.splitlines()[line - 1].lstrip()) + 1
    assert (problem.line, problem.column) == (line, column), str(problem)
    assert fragment in problem.message


def test_jinja_names_and_globals_are_not_taken_for_unknown_variables() -> None:
    source = "{% for item in missing %}{{ loop.index }}. {{ item }}{% endfor %}{{ range(2) | list }}"

    assert template_problems("intake-missing", source) == ()
    (problem,) = template_problems("intake-missing", source + "{{ item }}")
    assert problem.message.startswith("cannot be rendered with the variables the engine passes: 'item'")


def test_a_scope_template_on_one_line_is_reported_under_the_scope() -> None:
    scoped = (
        SOP_TEXT
        + '\nscopes:\n  - match: {github: "acme/*"}\n    messages:\n      templates:\n'
        + '        satisfaction:\n          en: "Thanks, {{ reporter | uper }}!"\n'
    )

    (problem,) = problems_of(scoped)

    assert (problem.line, problem.column) == position(scoped, "{{ reporter | uper }}", "uper")
    assert problem.message.startswith("scopes[0].messages.templates.satisfaction.en: unknown filter 'uper'")
    assert problem.message.endswith("did you mean 'upper'?")


def test_the_samples_cover_both_values_of_every_switch() -> None:
    for kind, variables in KIND_VARIABLES.items():
        combinations = list(sample_variables(kind))
        for name, samples in variables.items():
            seen = [c[name] for c in combinations]
            assert all(sample in seen for sample in samples), (kind, name)
    assert {c["undone"] for c in sample_variables("transition-rejected")} == {True, False}
    assert {c["created"] for c in sample_variables("checklist-created")} == {True, False}
    assert {c["applied"] for c in sample_variables("priority-set")} == {True, False}
    assert {len(c["deadlines"]) > 0 for c in sample_variables("receipt")} == {True, False}


# --- the engine passes exactly the catalogue's variables -------------------------------------


def test_render_refuses_variables_the_catalogue_does_not_list() -> None:
    variables = next(sample_variables("satisfaction"))
    own = {k: v for k, v in variables.items() if k not in ("rule_id", "sop", "clause")}

    with pytest.raises(TypeError, match=r"config\.templates lists"):
        render(POLICY, "satisfaction", POLICY.priority, **own, extra="x")
    with pytest.raises(TypeError, match=r"config\.templates lists"):
        render(POLICY, "satisfaction", POLICY.priority)
    assert render(POLICY, "satisfaction", POLICY.priority, **own).startswith("**This request is closed.**")


def _kinds_posted(decision: Decision) -> set[str]:
    """Which templates a decision's comments came from, told by their markers."""
    prefixes = {
        "transition-rejected:": "transition-rejected",
        "priority-set:": "priority-set",
        "priority-override:": "priority-override",
        "checklist:": "checklist-created",
        "satisfaction:": "satisfaction",
        "label-refused:": "label-refused",
        "command:": "command-answer",
        "plan-changed:": "plan-changed",
        "low-rating:": "low-rating",
        "status-unmapped:": "status-unmapped",
        "delay-refused:": "delay-refused",
        "receipt": "receipt",
        POLICY.intake.id: "intake-missing",
    }
    comments = [a for a in decision.actions if isinstance(a, PostComment)]
    return {kind for c in comments for prefix, kind in prefixes.items() if c.marker.startswith(prefix)}


def _engine_decisions() -> list[Decision]:
    """Real engine calls that between them post every kind of comment but the SLA notices."""
    event, snapshot = to_event("issues", "opened-1", fixture_json("github", "issues__opened.json"))
    opened = evaluate(POLICY, event, snapshot, NOW)
    warn_priority = POLICY.model_copy(update={"rule_modes": {POLICY.priority.id: Mode.WARN}})
    complete = replace(snapshot, fields=complete_fields(POLICY, "github"))
    suggested = evaluate(warn_priority, replace(event, delivery_id="opened-2"), complete, NOW)
    label = POLICY.trackers.github.priority_label("P1")
    chosen = Event(
        source="github",
        kinds=frozenset({EventKind.LABELS_CHANGED}),
        delivery_id="labeled-1",
        actor=PERSON,
        issue=GITHUB_REF,
        labels_after=frozenset({label}),
    )
    overridden = evaluate(POLICY, chosen, IssueSnapshot(ref=GITHUB_REF, labels=frozenset({label})), NOW)
    rejected, _ = move(POLICY, "github", "triage", "diagnosis", IssueSnapshot(ref=GITHUB_REF))
    verify = POLICY.workflow.transition("in-progress", "verification")
    close = POLICY.workflow.transition("acceptance", "closed")
    assert verify is not None and close is not None
    started, _ = move(
        POLICY, "github", "in-progress", "verification", snapshot_meeting(POLICY, verify, "github")
    )
    closed, _ = move(POLICY, "github", "acceptance", "closed", snapshot_meeting(POLICY, close, "github"))
    approved = frozenset({"plan/approved"})
    self_approval = replace(chosen, delivery_id="labeled-2", labels_after=approved)
    refused = evaluate(POLICY, self_approval, IssueSnapshot(ref=GITHUB_REF, labels=approved), NOW)
    command = replace(
        event,
        kinds=frozenset({EventKind.COMMENTED}),
        delivery_id="comment-1",
        name="issue_comment.created",
        comment=Comment(PERSON, "/delay soon", id="5"),
    )
    answered = evaluate(POLICY, command, IssueSnapshot(ref=GITHUB_REF), NOW)
    new_plan = replace(
        command, delivery_id="comment-2", comment=Comment(PERSON, "### Plan\n\nAnother way.", id="6")
    )
    withdrawn = evaluate(POLICY, new_plan, IssueSnapshot(ref=GITHUB_REF, labels=approved), NOW)
    rated = replace(command, delivery_id="comment-3", comment=Comment(PERSON, "1", id="8"))
    closed_issue = IssueSnapshot(ref=GITHUB_REF, is_open=False, reporter=PERSON.login)
    low = evaluate(POLICY, rated, closed_issue, NOW)
    paused = Event(
        source="jira",
        kinds=frozenset({EventKind.STATUS_CHANGED}),
        delivery_id="paused-1",
        actor=PERSON,
        issue=JIRA_REF,
        status_before="In Progress",
        status_after="Paused",
    )
    held = evaluate(POLICY, paused, IssueSnapshot(ref=JIRA_REF, status="Paused"), NOW)
    undated = replace(command, delivery_id="comment-4", comment=Comment(PERSON, "### Delay\n\nSoon.", id="9"))
    team = frozenset({"team-members"})  # a delay section is a notice only when the team writes it
    not_counted = evaluate(POLICY, undated, IssueSnapshot(ref=GITHUB_REF, actor_teams=team), NOW)
    return [
        opened,
        suggested,
        overridden,
        rejected,
        started,
        closed,
        refused,
        answered,
        withdrawn,
        low,
        held,
        not_counted,
    ]


def test_the_engine_renders_every_kind_with_exactly_the_catalogue_variables() -> None:
    """`render` raises TypeError on any other set of names, so every comment made here is proof."""
    posted = {kind for decision in _engine_decisions() for kind in _kinds_posted(decision)}
    clocks = read_clocks(
        rules_for(POLICY.sla),
        (Created(at=NOW, state=POLICY.workflow.initial, priority="P2"),),
        NOW + dt.timedelta(days=30),
    )
    facts = IssueFacts(is_open=True, priority="P2", reporter="carol", assignees=(), labels=frozenset())
    breached = due_notices(POLICY, GITHUB_REF, facts, clocks, ())
    warned = due_notices(POLICY, GITHUB_REF, facts, [replace(c, crossed=(0.75,)) for c in clocks], ())
    assert breached and warned and not any(n.failure for n in [*breached, *warned])
    posted |= {"sla-breached", "sla-warning"}

    assert posted == set(get_args(MessageKind)) == set(KIND_VARIABLES)
    assert all({"rule_id", "sop", "clause"} < variable_names(kind) for kind in KIND_VARIABLES)


# --- run time: a template that fails breaks its rule only ------------------------------------


def _with_template(policy: Policy, kind: MessageKind, source: str) -> Policy:
    """The policy with one template replaced, bypassing the loader (which would refuse it)."""
    templates = {**policy.messages.templates, kind: Text(en=source)}
    return policy.model_copy(update={"messages": Messages(templates=templates)})


def test_a_receipt_that_cannot_be_rendered_breaks_the_receipt_rule_only() -> None:
    policy = _with_template(POLICY, "receipt", "Received{{ (1 / 0) if level }}.")
    receipt = policy.sla.receipt
    assert receipt is not None
    event, snapshot = to_event("issues", "opened-1", fixture_json("github", "issues__opened.json"))

    decision = evaluate(policy, event, snapshot, NOW)
    intact = evaluate(POLICY, event, snapshot, NOW)

    (broken,) = decision.broken
    assert (broken.rule_id, broken.passed, broken.broken) == (receipt.id, False, True)
    assert broken.reasons == ("the comment template receipt could not be rendered: division by zero",)
    assert not [a for a in decision.actions if a.rule_id == receipt.id]
    others = [a for a in intact.actions if a.rule_id != receipt.id]
    assert others and list(decision.actions) == others
    assert not intact.broken


def test_a_broken_checklist_template_leaves_the_change_of_stage_and_other_rules_standing() -> None:
    policy = _with_template(POLICY, "checklist-created", "{{ checklist }}{{ 1 / 0 }}")
    transition = policy.workflow.transition("in-progress", "verification")
    assert transition is not None

    decision, _ = move(
        policy, "github", "in-progress", "verification", snapshot_meeting(policy, transition, "github")
    )

    (broken,) = decision.broken
    assert broken.rule_id == "self-check"
    assert broken.reasons[0].startswith("the comment template checklist-created could not be rendered: ")
    assert RememberState(transition.id, "verification") in decision.actions
    assert not [a for a in decision.actions if isinstance(a, CreateSubtasks | PostComment)]
    assert {r.rule_id for r in decision.results if r.passed} >= {
        transition.id,
        *(g.id for g in transition.guards),
    }


def test_in_warn_mode_a_broken_checklist_template_does_not_lose_the_rejection_comment() -> None:
    policy = _with_template(POLICY, "checklist-created", "{{ checklist }}{{ 1 / 0 }}")
    policy = policy.model_copy(update={"mode": Mode.WARN})

    decision, _ = move(policy, "github", "in-progress", "verification", IssueSnapshot(ref=GITHUB_REF))

    assert [r.rule_id for r in decision.broken] == ["self-check"]
    comments = [a for a in decision.actions if isinstance(a, PostComment)]
    assert [c.marker.split(":")[0] for c in comments] == ["transition-rejected"]
    assert RememberState("start-verification", "verification") in decision.actions


def test_a_broken_rejection_template_breaks_the_lifecycle_rule_and_undoes_nothing() -> None:
    policy = _with_template(POLICY, "transition-rejected", "{{ 1 / 0 }}")
    transition = policy.workflow.transition("triage", "diagnosis")
    assert transition is not None

    decision, _ = move(policy, "github", "triage", "diagnosis", IssueSnapshot(ref=GITHUB_REF))

    (broken,) = decision.broken
    assert broken.rule_id == policy.workflow.rule.id
    assert broken.reasons == (
        "the comment template transition-rejected could not be rendered: division by zero",
    )
    assert not [a for a in decision.actions if a.rule_id == transition.id]
    guards = {g.id for g in transition.guards}
    assert {r.rule_id for r in decision.violations if not r.broken} == guards


def test_a_sla_notice_that_cannot_be_rendered_has_a_failure_and_no_actions() -> None:
    policy = _with_template(POLICY, "sla-breached", "{{ (1 / 0) if level }}")
    clocks = read_clocks(
        rules_for(policy.sla),
        (Created(at=NOW, state=policy.workflow.initial, priority="P2"),),
        NOW + dt.timedelta(days=30),
    )
    facts = IssueFacts(is_open=True, priority="P2", reporter="carol", assignees=(), labels=frozenset())

    notices = due_notices(policy, GITHUB_REF, facts, clocks, ())

    assert notices and all(n.actions == () for n in notices)
    assert all(
        n.failure == "the comment template sla-breached could not be rendered: division by zero"
        for n in notices
    )
