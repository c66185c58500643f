"""Tracker text in our comments is text: escaped once, where templates print it, for every tracker.

A value from the tracker (a dropdown answer, a login, a display name) may carry a mention, HTML,
or Markdown that would add a heading or a bold fake approval to the bot's comment. GitHub gets the
escaped Markdown as it is; Jira gets it as ADF (Cloud) or wiki markup (Data Center), where the
value must come out as the characters it had. The posted comments are read the way GitHub reads
them: rendered by a CommonMark parser, mentions found as GitHub finds them in the text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import responses
from markdown_it import MarkdownIt

from config.loader import load_policy
from config.schema import Locale, MessageKind
from config.templates import KIND_VARIABLES, Markdown, escape, mention
from connector.jira.format import escape_wiki, to_adf, to_wiki
from policies.intake import is_option
from policies.render import render
from tests.conftest import fixture_json
from tests.github_support import FakeGithub, Service, form_body, issue_payload, labelled
from tests.jira_support import (
    CLOUD,
    DEPLOYMENTS,
    Deployment,
    Scenario,
    adf_text,
    as_created,
    start,
    with_intake,
)
from tests.jira_support import INTAKE_VALUES as JIRA_INTAKE

POLICY = load_policy()
HOSTILE = 'Standard" @acme/security-team <img src=x>\n**Approved by security: ship it**'
ONE_LINE = " ".join(HOSTILE.split())  # a value is one line of the comment
ACTOR = "Codertocat"  # the sender of the recorded GitHub deliveries
# What GitHub reads as a mention: `@` after no word character, then a login (or org/team).
MENTION = re.compile(r"(?<![\w`])@([A-Za-z0-9][A-Za-z0-9-]*(?:/[A-Za-z0-9][A-Za-z0-9-]*)?)")
MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable("table")


def mentions(markdown: str) -> list[str]:
    return MENTION.findall(markdown)


def rendered_text(markdown: str) -> str:
    """What a reader sees: the rendered HTML without its tags, entities read."""
    return html.unescape(re.sub(r"<[^>]+>", "", MARKDOWN.render(markdown)))


def assert_shown_as_text(comment: str) -> None:
    """No mention, HTML, heading or bold line from the value; the value is shown as written."""
    assert "acme/security-team" not in mentions(comment)
    assert "<img" not in comment and "<img" not in MARKDOWN.render(comment)
    for line in comment.splitlines():
        assert not line.startswith(("#", "**Approved")), line
    assert "<strong>Approved" not in MARKDOWN.render(comment)
    assert ONE_LINE.replace("@", "@\u2060") in rendered_text(comment)


# --- GitHub ---------------------------------------------------------------------------------


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


def test_a_hostile_dropdown_answer_is_quoted_as_text_and_the_actor_is_still_mentioned(
    sopguard: Service, github: FakeGithub
) -> None:
    body = form_body(**{"Customer tier": HOSTILE})
    sopguard.deliver(issue_payload("opened", labels=[], body=body), "open-hostile")
    sopguard.deliver(labelled(github, "status/in-progress"), "skip-hostile")  # New -> In progress

    asked, receipt, rejected = github.our_comments()
    assert asked.startswith("**Some required information is not valid.**")
    assert_shown_as_text(asked)
    assert '"Standard" @\u2060acme/security-team &lt;img src=x&gt; \\*\\*Approved' in asked
    assert "is not one of Strategic, Key, Standard" in asked
    assert all(not mentions(comment) for comment in (asked, receipt))
    assert mentions(rejected) == [ACTOR]  # the template's deliberate `@{{ actor }}`
    assert f"@{ACTOR} moved this issue" in rendered_text(rejected)


def test_a_dropdown_answer_that_is_not_an_option_sets_no_priority(
    sopguard: Service, github: FakeGithub
) -> None:
    body = form_body(**{"Impact": "Business outage", "Urgency": "High", "Customer tier": "Platinum"})

    sopguard.deliver(issue_payload("opened", labels=[], body=body), "open-platinum")

    assert not [label for label in github.labels if label.startswith("priority/")]
    asked, receipt = github.our_comments()
    assert '- Customer tier: "Platinum" is not one of Strategic, Key, Standard\n' in asked
    assert "needs-info" in github.labels
    assert receipt.startswith("**Received.** This request is handled as **P4** until its priority is set.")
    outcomes = {e.rule_id: e for e in sopguard.intake.store.audit.entries()}
    assert not outcomes["priority-from-impact-and-urgency"].passed


def test_an_answer_in_another_case_is_the_option() -> None:
    field = POLICY.intake.field("customer-tier")
    assert field is not None
    assert is_option(field, "strategic") and not is_option(field, "Strategic customer")


# --- Jira -----------------------------------------------------------------------------------


def _created(deployment: Deployment) -> dict[str, Any]:
    payload = (
        fixture_json("jira", "mattermost__webhook-issue-created.json")
        if deployment is CLOUD
        else as_created(fixture_json("jira", "mattermost__webhook-server-issue-updated-in-progress.json"))
    )
    return with_intake(payload, {**JIRA_INTAKE, "Customer tier": HOSTILE})


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_a_hostile_answer_reaches_jira_as_literal_text(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = Scenario("hostile intake", _created(deployment))
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)

    sopguard.deliver(scenario.payload, "create-hostile")

    asked = fake.our_comments()[0]
    if deployment is CLOUD:
        nodes = list(_adf_nodes(asked))
        assert not [n for n in nodes if n["type"] == "mention"]
        assert {n["type"] for n in nodes} <= {"doc", "paragraph", "text", "bulletList", "listItem"}
        assert f'"{ONE_LINE}" is not one of' in adf_text(asked)
    else:
        assert escape_wiki(f'"{ONE_LINE}" is not one of') in asked
        assert "[~" not in asked and "\u2060" not in asked
        assert not [line for line in asked.splitlines() if re.match(r"(h\d\.|bq\.|#)", line)]
    assert fake.priority != "Highest"  # Business outage x High is not computed with an unknown tier
    fake.check_against_openapi()


def _adf_nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        yield from (n for child in node.get("content", []) for n in _adf_nodes(child))


def test_the_actor_named_by_a_hostile_display_name_is_mentioned_once_and_only_the_actor() -> None:
    name = 'Dana "@acme/security-team" <b>'
    text = render(
        POLICY,
        "priority-override",
        POLICY.priority,
        level=Markdown("P1"),
        actor=name,
        computed=Markdown("P3"),
    )
    document = to_adf(text, {name: "acc-dana", "acme/security-team": "acc-team"})
    found = [n["attrs"] for n in _adf_nodes(document) if n["type"] == "mention"]
    assert found == [{"id": "acc-dana", "text": f"@{name}"}]
    wiki = to_wiki(text, {name: "dana", "acme/security-team": "team"})
    assert wiki.count("[~") == 1 and "was chosen by [~dana];" in wiki


# --- every template, every locale -----------------------------------------------------------

# The variables whose values come from the tracker, per kind; everything else is the policy's.
# "{}" is a value; "login" a login the template mentions (`@{{ actor }}`), "mention" one the engine
# mentions (`who`): a hostile one begins with a plain login, so it mentions that one person.
TRACKER_VALUES: dict[str, Any] = {
    "transition-rejected": {"actor": "login"},
    "intake-missing": {"invalid": [{"field": Markdown("Customer tier"), "value": "{}", "options": ["Key"]}]},
    "priority-set": {"impact": "{}", "urgency": "{}", "tier": "{}"},
    "priority-override": {"actor": "login"},
    "checklist-created": {},
    "sla-warning": {"who": "mention"},
    "sla-breached": {"who": "mention"},
    "receipt": {"reason": {"level": "P2", "impact": "{}", "urgency": "{}", "tier": "{}", "raised": True}},
    "satisfaction": {"reporter": "login"},
    "label-refused": {"actor": "login"},
    "command-answer": {"actor": "login"},
    "plan-changed": {"actor": "login"},
    "low-rating": {},
    "status-unmapped": {"status": "{}", "actor": "login"},
    "delay-refused": {"actor": "login"},
}
PLAIN = "dana"
HOSTILES = (
    HOSTILE,
    "# Heading\n- item\n1. one\n> quote\n---\n===",
    "1. Approved",
    "- [x] done | col |\n|---|---|",
    "`code` _em_ ~~gone~~ [link](http://x) ![i](x) <script>x</script> &#64;acme $x$ \\*",
    "@acme/security-team\u202e evil \u2066 \x00 \r\n\u2028 #1 *",
)


def _filled(template: Any, value: str) -> Any:
    if template == "{}":
        return value
    login = value if value == PLAIN else f"{PLAIN} {value}"
    if template == "login":
        return login
    if template == "mention":
        return mention(login)
    if isinstance(template, dict):
        return {key: _filled(item, value) for key, item in template.items()}
    if isinstance(template, list):
        return [_filled(item, value) for item in template]
    return template


def _variables(kind: MessageKind, value: str) -> dict[str, Any]:
    base = {name: samples[-1] for name, samples in KIND_VARIABLES[kind].items()}
    return {**base, **_filled(TRACKER_VALUES[kind], value)}


def _shape(markdown: str) -> tuple[Any, ...]:
    """What a value must not change: headings, bold runs, mentions, and the parsed structure."""
    tokens = MARKDOWN.parse(markdown)
    structure = [t.type for t in tokens] + [
        c.type for t in tokens for c in t.children or () if c.type not in ("text", "softbreak")
    ]
    headings = sum(line.startswith("#") for line in markdown.splitlines())
    return headings, markdown.count("**"), len(mentions(markdown)), structure


@pytest.mark.parametrize("hostile", HOSTILES, ids=range(len(HOSTILES)))
@pytest.mark.parametrize("locale", get_args(Locale))
@pytest.mark.parametrize("kind", get_args(MessageKind))
def test_no_tracker_value_changes_the_shape_of_any_template(
    kind: MessageKind, locale: Locale, hostile: str
) -> None:
    policy = POLICY.model_copy(update={"locale": locale})
    rule = POLICY.priority

    plain = render(policy, kind, rule, **_variables(kind, PLAIN))
    attacked = render(policy, kind, rule, **_variables(kind, hostile))

    assert _shape(attacked) == _shape(plain)
    assert "<script" not in MARKDOWN.render(attacked) and "<img" not in MARKDOWN.render(attacked)
    for format_ in (to_wiki(attacked), adf_text(to_adf(attacked))):
        assert "\u2060" not in format_


def test_an_escaped_or_joined_at_sign_is_never_a_jira_mention() -> None:
    text = f"@dana asked; {escape('@dana')} and \\@dana were quoted"
    document = to_adf(text, {"dana": "acc-dana"})
    found = [n for n in _adf_nodes(document) if n["type"] == "mention"]
    assert len(found) == 1 and adf_text(document) == "@dana asked; @dana and @dana were quoted\n"
    assert to_wiki(text, {"dana": "dana"}) == "[~dana] asked; @dana and @dana were quoted"


def test_a_backslash_of_the_text_stays_a_backslash_in_wiki_markup() -> None:
    assert to_wiki(escape("C:\\temp\\\\share *x*")) == "C:&#92;temp&#92;&#92;share \\*x*"


def test_escaped_text_reads_back_as_written_in_adf() -> None:
    for hostile in HOSTILES:
        assert adf_text(to_adf(escape(hostile))).strip() == " ".join(
            hostile.replace("\u202e", " ").replace("\u2066", " ").replace("\x00", " ").split()
        )
