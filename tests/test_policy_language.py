"""The policy language: loading, structural and cross-reference errors with their positions, scopes, modes.

Every broken policy here is the default `config/sop.yaml` with a few text replacements, and every expected
`LINE:COLUMN` is computed by finding the replaced text in the broken file, never written down by hand.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

import cli
from config import loader
from config.loader import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_POLICY_SIZE,
    LoadedPolicy,
    PolicyError,
    Problem,
    load_policy,
    parse_policy,
    read_policy,
)
from config.schema import Mode, Policy, Rule, ScopeMatch

SOP_PATH = Path(__file__).parents[1] / "config" / "sop.yaml"
SOP_TEXT = SOP_PATH.read_text(encoding="utf-8")
POLICY_PATH = "policy.yaml"
PROBLEM_LINE = re.compile(r"^(?P<path>.+):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")

Edit = tuple[str, str]


def mutate(*edits: Edit, text: str = SOP_TEXT) -> str:
    """Apply text replacements, each of which must match exactly once (so a changed sop.yaml fails loudly)."""
    for old, new in edits:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times, expected once"
        text = text.replace(old, new)
    return text


def where(text: str, needle: str, target: str | None = None) -> tuple[int, int]:
    """1-based line and column of `target` (default: all of `needle`) inside the single `needle` in `text`."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times, expected once"
    index = text.index(needle) + (needle.index(target) if target is not None else 0)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, POLICY_PATH)
    assert caught.value.problems, "a PolicyError must list at least one problem"
    return caught.value.problems


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, "\n".join(map(str, problems))
    return problems[0]


def with_scopes(block: str, text: str = SOP_TEXT) -> str:
    assert "\nscopes:" not in text
    return text.rstrip("\n") + "\n\nscopes:\n" + block


# --- the default policy --------------------------------------------------------------------------------


def test_embedded_default_policy_loads_and_is_the_repository_file() -> None:
    policy = load_policy()

    assert isinstance(policy, Policy)
    assert policy == parse_policy(SOP_TEXT, str(SOP_PATH))
    assert policy.workflow.state(policy.workflow.initial) is not None


def test_validate_command_accepts_the_default_policy() -> None:
    result = CliRunner().invoke(cli.main, ["validate", str(SOP_PATH)])

    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout
    assert str(SOP_PATH) in result.stdout


def test_validate_command_without_a_path_checks_the_embedded_policy() -> None:
    result = CliRunner().invoke(cli.main, ["validate"])

    assert result.exit_code == 0, result.output
    assert "default policy: valid" in result.stdout


# --- acceptance: several mistakes, one line each, at the offending node --------------------------------


def test_validate_reports_each_mistake_once_at_its_node(tmp_path: Path) -> None:
    broken = mutate(
        ("      from: [triage]\n      to: diagnosis\n", "      from: [triage]\n      to: diagnosys\n"),
        ("  needs_info_label: needs-info\n", "  needs_info_lable: needs-info\n"),
        (
            "by_priority: {P1: 15m, P2: 1h, P3: 4h, P4: 8h}",  # first-response: P4 removed
            "by_priority: {P1: 15m, P2: 1h, P3: 4h}",
        ),
        (
            "      checklists: [customer-acceptance, deliverables]\n",
            "      checklists: [customer-acceptance]\n",
        ),
    )
    copy = tmp_path / "my-policy.yaml"
    copy.write_text(broken, encoding="utf-8")
    expected = {
        where(broken, "to: diagnosys", "diagnosys"): "unknown state 'diagnosys'",
        where(broken, "needs_info_lable"): "did you mean 'needs_info_label'?",
        where(broken, "{P1: 15m, P2: 1h, P3: 4h}"): "priority P4 has no first-response target",
        where(broken, "  - id: deliverables\n", "deliverables"): "checklist 'deliverables' is not used",
    }

    result = CliRunner().invoke(cli.main, ["validate", str(copy)])

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected), result.stdout
    found: dict[tuple[int, int], str] = {}
    for line in lines:
        match = PROBLEM_LINE.match(line)
        assert match, f"not PATH:LINE:COLUMN: message: {line!r}"
        assert match["path"] == str(copy)
        found[int(match["line"]), int(match["column"])] = match["message"]
    assert found.keys() == expected.keys(), result.stdout
    for position, fragment in expected.items():
        assert fragment in found[position]
    assert f"{len(expected)} problems found" in result.stderr


def test_validate_command_reports_an_unreadable_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    result = CliRunner().invoke(cli.main, ["validate", str(missing)])

    assert result.exit_code == 1
    assert result.stdout.startswith(f"{missing}:1:1: cannot read the file")


# --- cross-reference checks ----------------------------------------------------------------------------

DUPLICATE_STATE = "    - {id: closed, sop: S5.1, title: {en: Closed, zh-CN: 已关闭}}\n"
DELIVERABLES_RULE = "        - id: deliverables-handed-over\n"
TEMPLATE_LINE = "{{ computed }}{% endif %}. The choice is kept and recorded."
MESSAGES_END = SOP_TEXT[SOP_TEXT.index("    satisfaction:\n") :]

# (edits, [(needle, target within needle, message fragment), ...]) -- one entry per expected problem.
CrossCase = tuple[tuple[Edit, ...], list[tuple[str, str, str]]]
CROSS_CASES: dict[str, CrossCase] = {
    "unknown initial state": (
        (("  initial: new\n", "  initial: nwe\n"),),
        [("initial: nwe", "nwe", "workflow.initial: unknown state 'nwe'")],
    ),
    "unknown from state": (
        (("      from: [triage]\n      to: diagnosis", "      from: [triag]\n      to: diagnosis"),),
        [("from: [triag]", "triag", "workflow.transitions[1].from[0]: unknown state 'triag'")],
    ),
    "duplicate state id": (
        ((DUPLICATE_STATE, DUPLICATE_STATE + "    - {id: closed, sop: S5.1, title: {en: Closed again}}\n"),),
        [
            (DUPLICATE_STATE, "closed", "state 'closed' is defined twice"),
            (
                "{id: closed, sop: S5.1, title: {en: Closed again}}",
                "closed",
                "state 'closed' is defined twice",
            ),
        ],
    ),
    "unknown checklist on a state": (
        (("      checklists: [self-check]\n", "      checklists: [self-check, self-chek]\n"),),
        [("[self-check, self-chek]", "self-chek", "checklists[1]: unknown checklist 'self-chek'")],
    ),
    "checklist guard names an unknown checklist": (
        (("          checklist: deliverables\n", "          checklist: deliverable\n"),),
        [("checklist: deliverable\n", "deliverable", "checklist: unknown checklist 'deliverable'")],
    ),
    "checklist not used by any state": (
        (
            (
                "      checklists: [customer-acceptance, deliverables]\n",
                "      checklists: [customer-acceptance]\n",
            ),
        ),
        [
            (
                "  - id: deliverables\n",
                "deliverables",
                "checklist 'deliverables' is not used",
            )
        ],
    ),
    "priority matrix value is not a level": (
        (("Minor: {High: P3, Medium: P3, Low: P4}", "Minor: {High: P3, Medium: P3, Low: P7}"),),
        [("Low: P7", "P7", "priority.matrix.Minor.Low: unknown priority level 'P7'")],
    ),
    "matrix rows do not cover the impact options": (
        (("    Minor: {High: P3, Medium: P3, Low: P4}\n", ""),),
        [
            (
                "  matrix:\n    Business outage",
                "Business outage",
                "one entry per impact option (missing Minor)",
            )
        ],
    ),
    "matrix row does not cover the urgency options": (
        (("Minor: {High: P3, Medium: P3, Low: P4}", "Minor: {High: P3, Medium: P3}"),),
        [("Minor: {High: P3, Medium: P3}", "{", "one entry per urgency option (missing Low)")],
    ),
    "SLA target misses a level": (
        (("by_priority: {P1: 4h, P2: 16h, P3: 40h, P4: 80h}", "by_priority: {P1: 4h, P2: 16h, P3: 40h}"),),
        [("by_priority: {P1: 4h, P2: 16h, P3: 40h}", "{", "priority P4 has no resolution target")],
    ),
    "unknown calendar": (
        (
            (
                "      kind: resolution\n      calendar: business-hours\n",
                "      kind: resolution\n      calendar: hours\n",
            ),
        ),
        [("calendar: hours\n", "hours", "sla.targets[1].calendar: unknown calendar 'hours'")],
    ),
    "unknown pause state": (
        (("  pause_states: [waiting-for-customer]\n", "  pause_states: [waiting]\n"),),
        [("pause_states: [waiting]", "waiting", "sla.pause_states[0]: unknown state 'waiting'")],
    ),
    "unsupported holidays country": (
        (("      holidays: {country: CN}\n", "      holidays: {country: XX}\n"),),
        [("{country: XX}", "XX", "the holidays library does not know country 'XX'")],
    ),
    "Jira status mapping misses a state": (
        (("      verification: [Verification]\n", ""),),
        [("    statuses:\n      new:", "new", "state 'verification' has no Jira status")],
    ),
    "Jira status name mapped twice": (
        (("      verification: [Verification]\n", "      verification: [Verification, Triage]\n"),),
        [("    statuses:\n      new:", "new", "Jira status 'Triage' is mapped to more than one state")],
    ),
    "Jira priority missing for a level": (
        (
            (
                "priorities: {P1: Highest, P2: High, P3: Medium, P4: Low}",
                "priorities: {P1: Highest, P2: High, P3: Medium}",
            ),
        ),
        [("priorities: {P1", "{", "priority P4 has no Jira priority name")],
    ),
    "duplicate rule ids": (
        ((DELIVERABLES_RULE, "        - id: priority-set\n"),),
        [
            (
                "        - id: priority-set\n          sop: S1.3",
                "priority-set",
                "rule id 'priority-set' is used by",
            ),
            (
                "        - id: priority-set\n          sop: S4.3",
                "priority-set",
                "rule id 'priority-set' is used by",
            ),
        ],
    ),
    "rule_modes names an unknown rule": (
        (("locale: en #", "rule_modes: {no-such-rule: warn}\nlocale: en #"),),
        [("{no-such-rule: warn}", "no-such-rule", "rule_modes.no-such-rule: unknown rule 'no-such-rule'")],
    ),
    "a clause with no text in sop_clauses": (
        (
            (
                '  S5.3: {en: "Measure response, resolution and reopen rates.", zh-CN: "度量响应、解决与重开率。"}\n',
                "",
            ),
        ),
        [
            (
                "    - id: reopen\n      sop: S5.3",
                "S5.3",
                "workflow.transitions[10].sop: clause S5.3 has no text",
            )
        ],
    ),
    "template with a Jinja syntax error": (
        ((TEMPLATE_LINE, TEMPLATE_LINE.replace("}}", "}", 1)),),
        [
            (
                "**Priority {{ level }}** was chosen",
                "**",
                "templates.priority-override.en: template syntax error:",
            )
        ],
    ),
    "missing message template": (
        ((MESSAGES_END, ""),),
        [
            (
                "  templates:\n    transition-rejected:",
                "transition-rejected",
                "no template for 'satisfaction'",
            ),
            (
                "  templates:\n    transition-rejected:",
                "transition-rejected",
                "no template for 'status-unmapped'",
            ),
        ],
    ),
}


@pytest.mark.parametrize(("edits", "expected"), CROSS_CASES.values(), ids=CROSS_CASES.keys())
def test_cross_reference_check_reports_at_the_node(
    edits: tuple[Edit, ...], expected: list[tuple[str, str, str]]
) -> None:
    broken = mutate(*edits)

    problems = problems_of(broken)

    assert len(problems) == len(expected), "\n".join(map(str, problems))
    for problem, (needle, target, fragment) in zip(problems, expected, strict=True):
        assert (problem.line, problem.column) == where(broken, needle, target), str(problem)
        assert fragment in problem.message
        assert problem.path == POLICY_PATH


def test_unknown_state_key_in_jira_statuses_is_reported_at_the_key() -> None:
    broken = mutate(
        ("      triage: [Triage]\n", "      triage: [Triage]\n      triag:\n        - Triage queue\n")
    )

    problem = only_problem(broken)

    assert "unknown state 'triag'" in problem.message
    assert (problem.line, problem.column) == where(broken, "      triag:\n", "triag")


def test_jira_priority_for_an_unknown_level_is_reported() -> None:
    broken = mutate(("P4: Low}", "P4: Low, P9: Lowest}"))

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, "P9: Lowest", "P9")
    assert "unknown priority level 'P9'" in problem.message


# --- structural errors ---------------------------------------------------------------------------------


def test_wrong_enum_value_is_reported_at_the_value() -> None:
    broken = mutate(("mode: enforce #", "mode: maybe #"))

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, "mode: maybe", "maybe")
    assert problem.message.startswith("mode: ")
    assert all(f"'{mode}'" in problem.message for mode in Mode)


def test_unknown_guard_kind_suggests_the_closest() -> None:
    guard = "      - id: owner-assigned\n        sop: S2.3\n        check: assignee\n"  # in a guard set
    broken = mutate((guard, guard.replace("assignee", "asignee")))

    problem = only_problem(broken)

    assert "unknown kind 'asignee'; did you mean 'assignee'?" in problem.message
    assert (problem.line, problem.column) == where(broken, "check: asignee", "asignee")


OWNER_GUARD = "        - id: priority-set\n"  # a transition's own guard
PLAN_REVIEW_GUARD = "      - id: high-risk-plan-reviewed\n"  # in a guard set
TYPO = "          when_lable: x\n"
SET_TYPO = "        when_lable: x\n"


def test_unknown_key_in_a_guard_is_reported_on_its_line_with_a_suggestion() -> None:
    broken = mutate((OWNER_GUARD, OWNER_GUARD + TYPO))

    problem = only_problem(broken)

    assert problem.line == where(broken, TYPO)[0]
    assert problem.message.endswith("did you mean 'when_label'?")


@pytest.mark.parametrize(
    ("guard", "typo"),
    [(OWNER_GUARD, TYPO), (PLAN_REVIEW_GUARD, SET_TYPO)],
    ids=["assignee guard", "label guard of a guard set"],
)
def test_unknown_key_in_a_guard_is_reported_at_the_key(guard: str, typo: str) -> None:
    broken = mutate((guard, guard + typo))

    problem = only_problem(broken)

    assert problem.message.endswith("did you mean 'when_label'?")
    assert (problem.line, problem.column) == where(broken, typo, "when_lable")


def test_error_in_a_label_guard_requirement_is_reported_on_the_requirement_line() -> None:
    old = "          by: reporter # the customer's own word: their /confirm\n          requirement: {en:"
    broken = mutate((old, old.replace("{en:", "{fr:")))

    problems = problems_of(broken)

    assert {p.line for p in problems} == {where(broken, "requirement: {fr:")[0]}


def test_error_path_inside_a_guard_names_only_keys_of_the_file() -> None:
    problem = only_problem(mutate((OWNER_GUARD, OWNER_GUARD + TYPO)))

    assert "unknown key 'when_lable' in workflow.transitions[1].guards[1];" in problem.message


def test_bad_sop_clause_pattern_is_reported_at_the_value() -> None:
    broken = mutate(
        ("  rule: {id: follow-the-lifecycle, sop: P2}", "  rule: {id: follow-the-lifecycle, sop: X9}")
    )

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, "sop: X9}", "X9")
    assert problem.message.startswith("workflow.rule.sop: ")


FIRST_RESPONSE = "P1: 15m, P2: 1h, P3: 4h, P4: 8h"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("15m", dt.timedelta(minutes=15)),
        ("4h", dt.timedelta(hours=4)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("2d", dt.timedelta(days=2)),
        ("1d2h3m", dt.timedelta(days=1, hours=2, minutes=3)),
    ],
)
def test_good_durations(written: str, expected: dt.timedelta) -> None:
    policy = parse_policy(mutate((FIRST_RESPONSE, FIRST_RESPONSE.replace("15m", written))))

    assert policy.sla.targets[0].by_priority["P1"] == expected


@pytest.mark.parametrize(
    ("written", "fragment"),
    [("15 minutes", "not a duration"), ("90", "not a duration"), ("0m", "longer than zero")],
)
def test_bad_durations_are_reported_at_the_value(written: str, fragment: str) -> None:
    broken = mutate((FIRST_RESPONSE, FIRST_RESPONSE.replace("15m", written)))

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, f"P1: {written}", written)
    assert problem.message.startswith("sla.targets[0].by_priority.P1: ")
    assert fragment in problem.message


def test_bad_duration_message_shows_the_accepted_forms() -> None:
    problem = only_problem(mutate((FIRST_RESPONSE, FIRST_RESPONSE.replace("15m", "15 minutes"))))

    assert "15m" in problem.message


def test_unknown_time_zone_is_reported_at_the_value() -> None:
    broken = mutate(("      timezone: Asia/Shanghai\n", "      timezone: Asia/Shanghia\n"))

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, "Asia/Shanghia")
    assert "unknown time zone 'Asia/Shanghia'" in problem.message


def test_duplicate_yaml_key_is_reported_at_the_second_key() -> None:
    broken = mutate(("  urgency_field: urgency\n", "  urgency_field: urgency\n  impact_field: impact\n"))

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, "urgency\n  impact_field", "impact_field")
    assert problem.message == "duplicate key 'impact_field' in priority"


def test_invalid_yaml_is_reported_with_its_line() -> None:
    broken = mutate(("  tier_field: customer-tier\n", "  tier_field: customer-tier\n   bad: indent\n"))

    problem = only_problem(broken)

    assert problem.line == where(broken, "   bad: indent")[0]
    assert problem.message.startswith("invalid YAML: ")


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    assert only_problem(text) == Problem(POLICY_PATH, 1, 1, "the file is empty")


@pytest.mark.parametrize("text", ["- workflow\n- intake\n", "just a string\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    problem = only_problem(text)

    assert (problem.line, problem.column) == (1, 1)
    assert "a policy is a mapping" in problem.message


@pytest.mark.parametrize("make_path", [lambda tmp: tmp / "missing.yaml", lambda tmp: tmp])
def test_unreadable_path(tmp_path: Path, make_path: Callable[[Path], Path]) -> None:
    path = make_path(tmp_path)

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    [problem] = caught.value.problems
    assert (problem.path, problem.line, problem.column) == (str(path), 1, 1)
    assert problem.message.startswith("cannot read the file: ")


def test_mode_off_stays_a_string() -> None:
    policy = parse_policy(
        mutate(
            ("mode: enforce #", "mode: off #"), ("locale: en #", "rule_modes: {reopen: off}\nlocale: en #")
        )
    )

    assert policy.mode is Mode.OFF
    assert policy.rule_modes == {"reopen": Mode.OFF}


def test_unknown_top_level_section_suggests_the_closest_and_names_the_missing_one() -> None:
    broken = mutate(("\nworkflow:\n", "\nworkflows:\n"))

    messages = [p.message for p in problems_of(broken)]

    assert "unknown key 'workflows' in the top level; did you mean 'workflow'?" in messages
    assert "workflow: required key is missing" in messages


def test_unknown_key_in_a_template_text_suggests_the_alias() -> None:
    broken = mutate(("    intake-missing:\n      en: |", "    intake-missing:\n      zh_CN: x\n      en: |"))

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, "zh_CN")
    assert problem.message.endswith("did you mean 'zh-CN'?")


def test_unknown_key_in_an_optional_section_gets_a_suggestion() -> None:
    broken = mutate(("      holidays: {country: CN}\n", "      holidays: {country: CN, subdivison: SH}\n"))

    problem = only_problem(broken)

    assert problem.message.endswith("did you mean 'subdivision'?")


# --- all errors at once --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("structural", "cross"),
    [
        (("mode: enforce #", "mode: maybe #"), ("      to: diagnosis\n", "      to: diagnosys\n")),
        (
            ("  needs_info_label: needs-info\n", "  needs_info_lable: needs-info\n"),
            ("  initial: new", "  initial: nwe"),
        ),
        (
            ("      timezone: Asia/Shanghai\n", "      timezone: Mars/Base\n"),
            ("P3: Medium, P4: Low}", "P3: Medium}"),
        ),
    ],
)
def test_structural_and_cross_reference_errors_are_reported_together(structural: Edit, cross: Edit) -> None:
    broken = mutate(structural, cross)

    problems = problems_of(broken)

    assert len(problems) == 2, "\n".join(map(str, problems))
    assert {p.line for p in problems} == {where(broken, structural[1])[0], where(broken, cross[1])[0]}


# --- scopes --------------------------------------------------------------------------------------------

SCOPES = """\
  - match: {github: "acme/*"}
    mode: warn
    locale: zh-CN
    rule_modes: {reopen: off, start-triage: warn}
    messages:
      templates:
        transition-rejected: {en: "scoped {{ to_state }}"}
        intake-missing: {en: x}
        priority-set: {en: x}
        priority-override: {en: x}
        checklist-created: {en: x}
  - match: {jira: OPS}
    mode: off
  - match: {github: "acme/widgets"}
    mode: off
"""


@pytest.fixture(scope="module")
def scoped_policy() -> Policy:
    return parse_policy(
        with_scopes(SCOPES, mutate(("locale: en #", "rule_modes: {reopen: warn}\nlocale: en #")))
    )


def test_first_matching_github_scope_replaces_sections_and_merges_rule_modes_and_templates(
    scoped_policy: Policy,
) -> None:
    scoped = scoped_policy.for_issue("github", "acme/widgets")

    assert (scoped.mode, scoped.locale) == (Mode.WARN, "zh-CN")
    own = scoped_policy.scopes[0].messages
    assert own is not None
    assert scoped.messages.templates == {**scoped_policy.messages.templates, **own.templates}
    assert scoped.messages.templates["sla-warning"] == scoped_policy.messages.templates["sla-warning"]
    assert scoped.rule_modes == {"reopen": Mode.OFF, "start-triage": Mode.WARN}
    assert scoped.workflow == scoped_policy.workflow
    assert scoped.priority == scoped_policy.priority


def test_jira_scope_matches_the_project_key(scoped_policy: Policy) -> None:
    assert scoped_policy.for_issue("jira", "OPS").mode is Mode.OFF
    assert scoped_policy.for_issue("jira", "OPSX").mode is Mode.ENFORCE


@pytest.mark.parametrize(
    ("source", "scope"), [("github", "other/repo"), ("jira", "acme/widgets"), ("github", "OPS")]
)
def test_issue_outside_every_scope_keeps_the_default(scoped_policy: Policy, source: str, scope: str) -> None:
    policy = scoped_policy.for_issue(source, scope)

    assert policy.mode is Mode.ENFORCE
    assert policy.rule_modes == {"reopen": Mode.WARN}
    assert policy.messages == scoped_policy.messages


def test_cross_reference_error_in_a_scope_is_reported_under_the_scope() -> None:
    block = """\
  - match: {jira: OPS}
    sla:
      targets:
        - {id: first-response, sop: S1.4, kind: first-response, by_priority: {P1: 1h, P2: 2h, P3: 3h}}
"""
    broken = with_scopes(block)

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, "{P1: 1h, P2: 2h, P3: 3h}")
    assert problem.message == "scopes[0].sla.targets[0].by_priority: priority P4 has no first-response target"


def test_unknown_rule_in_a_scope_rule_modes_is_reported_under_the_scope() -> None:
    broken = with_scopes("  - match: {jira: OPS}\n    rule_modes: {reopn: off}\n")

    problem = only_problem(broken)

    assert problem.line == where(broken, "{reopn: off}")[0]
    assert problem.message.startswith("scopes[0].rule_modes.reopn: unknown rule 'reopn'")


def test_global_rule_modes_error_is_not_repeated_under_a_scope() -> None:
    broken = with_scopes(
        "  - match: {jira: OPS}\n    rule_modes: {reopen: off}\n",
        mutate(("locale: en #", "rule_modes: {no-such-rule: warn}\nlocale: en #")),
    )

    problem = only_problem(broken)

    assert problem.line == where(broken, "no-such-rule")[0]


def test_scope_adding_a_priority_level_without_sla_target_is_reported() -> None:
    priority = SOP_TEXT[SOP_TEXT.index("priority:\n  id:") : SOP_TEXT.index("\nchecklists:\n")]
    scoped_priority = mutate(
        ("levels: [P1, P2, P3, P4]", "levels: [P1, P2, P3, P4, P5]"),
        ("Minor: {High: P3, Medium: P3, Low: P4}", "Minor: {High: P3, Medium: P4, Low: P5}"),
        text=priority,
    )
    block = "  - match: {jira: OPS}\n" + "".join(f"    {line}\n" for line in scoped_priority.splitlines())

    messages = [p.message for p in problems_of(with_scopes(block))]

    assert any("priority P5 has no first-response target" in m for m in messages)


@pytest.mark.parametrize("match", ["{}", "{github: acme/widgets, jira: OPS}"])
def test_scope_match_needs_exactly_one_tracker(match: str) -> None:
    broken = with_scopes(f"  - match: {match}\n    mode: warn\n")

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, f"match: {match}", match)
    assert problem.message.startswith("scopes[0].match: ")
    assert "exactly one of `github` or `jira`" in problem.message


@pytest.mark.parametrize("fields", [{}, {"github": "acme/*", "jira": "OPS"}])
def test_scope_match_model_rejects_both_or_neither(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        ScopeMatch.model_validate(fields)


# --- modes ---------------------------------------------------------------------------------------------

E, W, OFF = Mode.ENFORCE, Mode.WARN, Mode.OFF


@pytest.mark.parametrize(
    ("global_mode", "own", "by_id", "expected"),
    [
        (E, None, None, E),
        (W, None, None, W),
        (OFF, None, None, OFF),
        (E, W, None, W),
        (E, OFF, None, OFF),
        (W, E, None, W),
        (OFF, E, None, OFF),
        (W, OFF, None, OFF),
        (E, None, W, W),
        (W, None, E, W),
        (E, E, OFF, OFF),
        (E, OFF, W, W),  # rule_modes (which a scope can set) replaces the rule's own mode
    ],
)
def test_mode_of_is_the_more_cautious(
    default_policy: Policy, global_mode: Mode, own: Mode | None, by_id: Mode | None, expected: Mode
) -> None:
    rule_modes = {"the-rule": by_id} if by_id else {}
    policy = default_policy.model_copy(update={"mode": global_mode, "rule_modes": rule_modes})

    assert policy.mode_of(Rule(id="the-rule", sop="P2", mode=own)) is expected


def test_scope_rule_modes_reach_mode_of(scoped_policy: Policy) -> None:
    reopen = next(t for t in scoped_policy.workflow.transitions if t.id == "reopen")

    assert scoped_policy.mode_of(reopen) is Mode.WARN
    assert scoped_policy.for_issue("github", "acme/x").mode_of(reopen) is Mode.OFF


# --- JSON Schema ---------------------------------------------------------------------------------------

SECTIONS = ["workflow", "intake", "priority", "checklists", "sla", "trackers", "messages", "scopes"]


def schema_output() -> dict[str, Any]:
    result = CliRunner().invoke(cli.main, ["schema"])
    assert result.exit_code == 0, result.output
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_schema_command_prints_the_policy_schema() -> None:
    schema = schema_output()

    assert set(SECTIONS) <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert "from" in schema["$defs"]["Transition"]["properties"]  # aliases, as written in YAML
    assert "zh-CN" in schema["$defs"]["Text"]["properties"]


def test_default_policy_validates_against_the_schema() -> None:
    document = yaml.safe_load(SOP_TEXT)

    jsonschema.validate(document, schema_output())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "workflows": document["workflow"]}, schema_output())


# --- any bytes: encodings, characters YAML refuses, values PyYAML cannot build, limits -----------------

HOLIDAYS_LINE = "      holidays: {country: CN}\n"
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def file_problems(path: Path) -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return caught.value.problems


def test_a_policy_saved_as_gbk_is_read_as_gb18030_with_a_warning(tmp_path: Path) -> None:
    copy = tmp_path / "gbk.yaml"
    copy.write_bytes(SOP_TEXT.encode("gbk"))

    loaded = read_policy(copy)

    assert loaded.policy == parse_policy(SOP_TEXT)
    assert loaded.warnings == [f"{copy}: read as GB18030 (not UTF-8); save it as UTF-8"]


def test_a_byte_order_mark_is_accepted_without_a_warning(tmp_path: Path) -> None:
    copy = tmp_path / "bom.yaml"
    copy.write_bytes(b"\xef\xbb\xbf" + SOP_TEXT.encode("utf-8"))

    assert read_policy(copy) == LoadedPolicy(parse_policy(SOP_TEXT), [])


def test_a_file_neither_utf8_nor_gb18030_is_a_problem_at_the_first_bad_byte(tmp_path: Path) -> None:
    broken = mutate(("mode: enforce #", "mode: enf\ufffdrce #"))
    copy = tmp_path / "gbk-and-latin.yaml"
    before, after = broken.split("\ufffd")
    copy.write_bytes(before.encode("gbk") + b"\xff" + after.encode("gbk"))

    [problem] = file_problems(copy)

    message = "neither UTF-8 nor GB18030: cannot decode byte 0xFF; save the file as UTF-8"
    assert problem == Problem(str(copy), *where(broken, "\ufffd"), message)


def test_a_damaged_utf8_file_is_not_read_as_gb18030(tmp_path: Path) -> None:
    """These bytes are all GB18030 (garbled), but most of the non-ASCII text is UTF-8."""
    copy = tmp_path / "damaged.yaml"
    data = "title: 中文\nmode: enf\ufffdrce\n".encode().replace("\ufffd".encode(), b"\x85")
    assert "中文" not in data.decode("gb18030")
    copy.write_bytes(data)

    [problem] = file_problems(copy)

    assert problem == Problem(
        str(copy), 2, 10, "not UTF-8 text: cannot decode byte 0x85; save the file as UTF-8"
    )


def test_a_control_character_is_a_problem_at_its_position() -> None:
    broken = mutate(("mode: enforce #", "mode: enf\x01orce #"))

    problem = only_problem(broken)

    assert problem == Problem(
        POLICY_PATH,
        *where(broken, "\x01"),
        "invalid YAML: character U+0001 is not allowed (a control or special character)",
    )


def test_an_impossible_date_is_a_problem_at_the_value() -> None:
    broken = mutate((HOLIDAYS_LINE, HOLIDAYS_LINE + "      extra_holidays: [2024-01-01, 2024-02-30]\n"))

    problem = only_problem(broken)

    assert problem == Problem(
        POLICY_PATH,
        *where(broken, "2024-02-30"),
        "cannot read '2024-02-30' as a date: day is out of range for month",
    )


def test_a_leap_day_is_a_holiday() -> None:
    policy = parse_policy(mutate((HOLIDAYS_LINE, HOLIDAYS_LINE + "      extra_holidays: [2024-02-29]\n")))

    assert policy.sla.calendars[0].extra_holidays == [dt.date(2024, 2, 29)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "9" * 5000,
            "cannot read '9999999999999999999999999999999999999...' as an integer: Exceeds the limit",
        ),
        ("0x_", "cannot read '0x_' as an integer: invalid literal for int() with base 16: ''"),
        ("!!bool maybe", "cannot read 'maybe' as a boolean: not a valid value"),
        ("!!timestamp noon", "cannot read 'noon' as a date: not a valid value"),
    ],
)
def test_a_scalar_pyyaml_cannot_build_is_a_problem_at_the_value(value: str, message: str) -> None:
    broken = mutate(("  tier_field: customer-tier\n", f"  tier_field: {value}\n"))

    problem = only_problem(broken)

    assert (problem.line, problem.column) == where(broken, f"tier_field: {value}", value)
    assert problem.message.startswith(message)


def test_nesting_deeper_than_the_limit_is_a_problem_at_the_first_node_too_deep() -> None:
    # The top-level mapping is level 1, so `deep:`'s value starts at level 2.
    broken = SOP_TEXT + "deep: " + "[" * 60 + "]" * 60 + "\n"
    line, column = where(broken, "deep: ")

    problem = only_problem(broken)

    assert problem == Problem(
        POLICY_PATH, line, column + len("deep: ") + MAX_DEPTH - 1, "nesting deeper than 50 levels"
    )


def test_nesting_up_to_the_limit_is_composed() -> None:
    broken = SOP_TEXT + "deep: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"

    assert "unknown key 'deep' in the top level" in only_problem(broken).message


def test_an_alias_bomb_is_refused_at_the_alias_that_passes_the_node_limit() -> None:
    broken = SOP_TEXT + ALIAS_BOMB

    problem = only_problem(broken)

    assert problem == Problem(
        POLICY_PATH,
        *where(broken, "e: &e [*d", "*d"),
        f"alias *d repeats 7,381 nodes, past the limit of {MAX_NODES:,} for the whole policy",
    )


def test_a_few_aliases_are_fine() -> None:
    policy = parse_policy(
        mutate(
            ("  pause_states: [waiting-for-customer]\n", "  pause_states: &paused [waiting-for-customer]\n")
        )
    )

    assert policy.sla.pause_states == ["waiting-for-customer"]


def test_an_alias_inside_its_own_anchor_is_a_problem() -> None:
    broken = SOP_TEXT + "loop: &loop [1, *loop]\n"

    assert only_problem(broken) == Problem(
        POLICY_PATH, *where(broken, "*loop]"), "alias *loop is inside the node it refers to"
    )


def test_more_nodes_than_the_limit_is_a_problem_at_the_first_node_past_it() -> None:
    text = "x: [" + "1, " * MAX_NODES + "]\n"

    problem = only_problem(text)

    assert problem.message == f"more than {MAX_NODES:,} YAML nodes; a policy this large is refused"
    assert problem.line == 1


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    copy = tmp_path / "big.yaml"
    copy.write_bytes(SOP_TEXT.encode() + b"#" * MAX_POLICY_SIZE)

    assert file_problems(copy) == [
        Problem(str(copy), 1, 1, f"the file is larger than {MAX_POLICY_SIZE:,} bytes, the limit for a policy")
    ]


BROKEN_FILES: dict[str, bytes] = {
    "not-utf8": b"mode: enf\xffrce\n",
    "damaged-utf8": "title: 中文\nmode: enf\x85rce\n".encode().replace(b"\xc2\x85", b"\x85"),
    "control": b"mode: enf\x01orce\n",
    "date": SOP_TEXT.replace(HOLIDAYS_LINE, HOLIDAYS_LINE + "      extra_holidays: [2024-02-30]\n").encode(),
    "nesting": SOP_TEXT.encode() + b"deep: " + b"[" * 500 + b"]" * 500 + b"\n",
    "alias-bomb": SOP_TEXT.encode() + ALIAS_BOMB.encode(),
}


@pytest.mark.parametrize("data", BROKEN_FILES.values(), ids=BROKEN_FILES.keys())
def test_validate_command_reports_problems_not_a_traceback(tmp_path: Path, data: bytes) -> None:
    copy = tmp_path / "broken.yaml"
    copy.write_bytes(data)

    result = CliRunner().invoke(cli.main, ["validate", str(copy)])

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    [line] = result.stdout.splitlines()
    match = PROBLEM_LINE.match(line)
    assert match and match["path"] == str(copy), line
    assert result.stderr == "1 problem found\n"


def test_validate_command_warns_on_stderr_about_a_gbk_file(tmp_path: Path) -> None:
    copy = tmp_path / "gbk.yaml"
    copy.write_bytes(SOP_TEXT.encode("gbk"))

    result = CliRunner().invoke(cli.main, ["validate", str(copy)])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{copy}: valid")
    # first, before any warning about the holidays data (tests/test_calendar_checks.py)
    assert result.stderr.splitlines()[0] == f"{copy}: read as GB18030 (not UTF-8); save it as UTF-8"


def test_validate_command_shows_the_encoding_warning_with_the_problems(tmp_path: Path) -> None:
    copy = tmp_path / "gbk.yaml"
    copy.write_bytes(mutate(("mode: enforce #", "mode: enforc #")).encode("gbk"))

    result = CliRunner().invoke(cli.main, ["validate", str(copy)])

    assert result.exit_code == 1
    assert "mode: Input should be" in result.stdout
    assert result.stderr.startswith(f"{copy}: read as GB18030 (not UTF-8); save it as UTF-8\n")


NAMED_CASES: dict[str, str] = {
    "control": mutate(("mode: enforce #", "mode: enf\x01orce #")),
    "surrogate": mutate(("mode: enforce #", "mode: enf\ud800orce #")),
    "date": mutate((HOLIDAYS_LINE, HOLIDAYS_LINE + "      extra_holidays: [2024-02-30]\n")),
    "nesting": SOP_TEXT + "deep: " + "[" * 60 + "]" * 60 + "\n",
    "alias-bomb": SOP_TEXT + ALIAS_BOMB,
    "recursive-alias": SOP_TEXT + "loop: &loop [1, *loop]\n",
    "node-limit": "x: [" + "1, " * MAX_NODES + "]\n",
    "invalid-yaml": mutate(
        ("  tier_field: customer-tier\n", "  tier_field: customer-tier\n   bad: indent\n")
    ),
}


def test_a_lone_surrogate_is_a_problem_at_its_position() -> None:
    broken = NAMED_CASES["surrogate"]

    problem = only_problem(broken)

    assert problem == Problem(
        POLICY_PATH,
        *where(broken, "\ud800"),
        "invalid YAML: character U+D800 is not allowed (a control or special character)",
    )


@pytest.mark.parametrize("text", NAMED_CASES.values(), ids=NAMED_CASES.keys())
def test_pyyaml_own_parser_reports_the_same_problems_as_libyaml(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """The loader uses libyaml's parser where PyYAML has it; PyYAML's own must agree on positions,
    and on the messages the loader writes (the two word their YAML syntax errors differently)."""
    with_libyaml = problems_of(text)
    monkeypatch.setattr(loader, "_LOADER", loader._PythonPolicyLoader)

    with_pyyaml = problems_of(text)

    assert [(p.line, p.column) for p in with_pyyaml] == [(p.line, p.column) for p in with_libyaml]
    syntax_error = (
        "invalid YAML: " in with_libyaml[0].message and "character U+" not in with_libyaml[0].message
    )
    assert syntax_error or with_pyyaml == with_libyaml


def test_a_template_nested_too_deeply_is_a_problem_not_a_recursion_error() -> None:
    needle = "{{ target }} target of this {{ level }} issue is"
    broken = mutate((needle, needle.replace("target", "[" * 200 + "]" * 200, 1)))

    assert only_problem(broken).line == where(broken, "{{ [[[")[0]


@pytest.mark.parametrize(
    "edit",
    [("mode: enforce #", "mode: enforce #"), ("mode: enforce #", "mode: enforc #")],
    ids=["valid", "with-a-problem"],
)
def test_load_policy_logs_the_encoding_warning_whether_or_not_the_policy_is_valid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, edit: Edit
) -> None:
    """`serve` and `worker` load through `load_policy`; the warning reaches their log."""
    copy = tmp_path / "gbk.yaml"
    copy.write_bytes(mutate(edit).encode("gbk"))

    with caplog.at_level("WARNING", logger="config.loader"), contextlib.suppress(PolicyError):
        load_policy(copy)

    assert caplog.messages == [f"{copy}: read as GB18030 (not UTF-8); save it as UTF-8"]
