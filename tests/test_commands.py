"""Slash commands (issue 10): `/approve-plan`, `/confirm`, `/accept`, `/reject "reason"`,
`/delay 2026-12-20 "reason"`, `/cancel duplicate|spam|withdrawn "reason"`, each checked against who
may give it and when, carried out by sopguard, answered (a reaction on GitHub, a short comment on
Jira; a short comment why when refused) and audited, on GitHub and on Jira.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from config.loader import load_policy
from config.schema import Command
from policies.commands import given, parse
from policies.models import IssueRef, Source
from policies.sla import DelayAnnounced
from runtime.report_page import ReportQuery, gather
from runtime.services import utc_now
from tests.conftest import fixture_json, services_of
from tests.github_support import (
    COMMENTED_AT,
    REF,
    REPO,
    FakeGithub,
    Service,
    form_body,
    issue_payload,
    labelled,
    put_in_state,
)
from tests.jira_support import CLOUD, FakeJira, adf_text, fake_for, issue_path
from tests.jira_support import Service as JiraService
from tests.jira_support import service as jira_service

POLICY = load_policy()
ISSUE = f"/repos/{REPO}/issues/1"
REPORTER_ID = 21031067  # Codertocat, who opened the fixture's issue (and is its assignee)


def _command(name: str) -> Command:
    command = POLICY.command(name)
    assert command is not None
    return command


# --- reading a command -------------------------------------------------------------------------


def test_commands_are_lines_of_their_own_with_quoted_reasons() -> None:
    body = 'Thanks.\n/reject "the printer still jams"\nnot /accept\n  /delay 2026-12-20 "parts are late"'

    found = [(g.name, g.args) for g in given(body, "github")]

    assert found == [("reject", ("the printer still jams",)), ("delay", ("2026-12-20", "parts are late"))]
    delay = parse(_command("delay"), found[1][1])
    assert (delay.date and delay.date.isoformat(), delay.reason) == ("2026-12-20", "parts are late")


@pytest.mark.parametrize(
    ("markup", "body"),
    [
        ("github", "> /accept\n\nNot yet: the printer still jams."),
        ("github", "> When you are satisfied, reply with\n/accept"),  # a lazy continuation: quoted
        ("github", "Reply with:\n\n```\n/accept\n```"),
        ("github", "Reply with:\n\n~~~text\n/accept\n~~~"),
        ("github", "Reply with:\n\n    /accept"),
        ("jira", "{quote}\nWhen you are satisfied, reply with\n/accept\n{quote}\nNot yet."),
        ("jira", "Reply with:\n{code:none}\n/accept\n{code}"),
        ("jira", "Reply with:\n{noformat}\n/accept\n{noformat}"),
    ],
)
def test_a_command_quoted_or_shown_as_code_is_not_given(markup: Source, body: str) -> None:
    assert given(body, markup) == []
    assert [g.name for g in given(body + '\n\n/reject "still jams"', markup)] == ["reject"]


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("delay", ("next week", "late")),
        ("delay", ("2026-12-20",)),
        ("cancel", ("boring", "x")),
        ("reject", ()),
    ],
)
def test_a_command_without_what_it_needs_is_a_usage_problem(name: str, args: tuple[str, ...]) -> None:
    assert parse(_command(name), args).problem == "usage"


# --- GitHub --------------------------------------------------------------------------------------


def commented(
    github: FakeGithub, body: str, *, by: str, user_id: int, association: str = "NONE"
) -> dict[str, Any]:
    """`issue_comment.created` as GitHub sends it for a comment on the fake's issue."""
    payload = copy.deepcopy(fixture_json("github", "issue_comment__created.json"))
    payload["issue"]["labels"] = [{"name": name} for name in github.labels]
    payload["issue"]["updated_at"] = "2019-05-15T15:20:18Z"
    comment_id = 7000 + len(github.comments)
    person = {**payload["sender"], "login": by, "id": user_id}
    payload["sender"] = person
    payload["comment"].update(id=comment_id, body=body, user=person, author_association=association)
    github.comments.append({"id": comment_id, "body": body, "user": person, "created_at": COMMENTED_AT})
    return payload


def _answers(github: FakeGithub) -> list[str]:
    return [body for body in github.our_comments() if "was not carried out" in body]


def test_github_approve_plan_by_the_assignee_is_refused_and_by_a_reviewer_stays(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "planning", "risk/high")

    sopguard.deliver(
        commented(github, "/approve-plan", by="Codertocat", user_id=REPORTER_ID, association="OWNER"),
        "c-1",
        "issue_comment",
    )

    (refusal,) = _answers(github)
    assert refusal.startswith(
        "**/approve-plan was not carried out.** @Codertocat may not give it: only approvers may"
    )
    assert "plan/approved" not in github.labels

    payload = commented(github, "LGTM\n/approve-plan", by="rita", user_id=5, association="COLLABORATOR")
    sopguard.deliver(payload, "c-2", "issue_comment")

    assert "plan/approved" in github.labels and github.reactions == [(payload["comment"]["id"], "+1")]
    assert len(_answers(github)) == 1
    audit = {e.rule_id: e.outcome for e in sopguard.intake.store.audit.entries() if e.delivery_id == "c-2"}
    assert "command-approve-plan" in str(audit)


def test_github_the_customers_confirmation_is_their_own_command_not_an_agents_label(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "customer-confirmation")

    agents_label = labelled(github, "customer-confirmed", by="agent-amy")
    agents_label["sender"]["id"] = 8
    sopguard.deliver(agents_label, "l-1")
    assert "customer-confirmed" not in github.labels  # removed: only the reporter confirms
    sopguard.deliver(
        commented(github, "/confirm", by="agent-amy", user_id=8, association="MEMBER"), "c-1", "issue_comment"
    )
    assert "customer-confirmed" not in github.labels and len(_answers(github)) == 1

    sopguard.deliver(
        commented(github, "/confirm", by="Codertocat", user_id=REPORTER_ID, association="OWNER"),
        "c-2",
        "issue_comment",
    )

    assert "customer-confirmed" in github.labels and len(github.reactions) == 1


def test_github_accept_only_in_acceptance_and_reject_needs_a_reason_and_moves_back(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "verification")
    sopguard.deliver(
        commented(github, "/accept", by="Codertocat", user_id=REPORTER_ID, association="OWNER"),
        "c-1",
        "issue_comment",
    )
    (early,) = _answers(github)
    assert "It can be given only in Customer acceptance." in early

    put_in_state(sopguard, github, "acceptance", "customer-accepted")
    sopguard.deliver(
        commented(github, "/reject", by="Codertocat", user_id=REPORTER_ID, association="OWNER"),
        "c-2",
        "issue_comment",
    )
    assert 'Write it as: `/reject "reason"`' in _answers(github)[-1]

    sopguard.deliver(
        commented(
            github,
            '/reject "the report is missing"',
            by="Codertocat",
            user_id=REPORTER_ID,
            association="OWNER",
        ),
        "c-3",
        "issue_comment",
    )

    assert set(github.labels) == {"status/in-progress"}
    assert sopguard.intake.store.ledger.memory(REF).last_state == "in-progress"


def test_github_cancel_closes_without_acceptance_with_its_reason_and_a_passer_by_cannot(
    sopguard: Service, github: FakeGithub
) -> None:
    opened = issue_payload("opened", labels=[], body=form_body(Impact="Degraded service", Urgency="High"))
    opened["issue"]["created_at"] = (utc_now() - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sopguard.deliver(opened, "opened")  # so that the report has it among the issues of the period
    put_in_state(sopguard, github, "triage")
    sopguard.deliver(
        commented(github, '/cancel spam "ads"', by="mallory", user_id=66), "c-1", "issue_comment"
    )
    assert github.state == "open" and len(_answers(github)) == 1

    sopguard.deliver(
        commented(github, '/cancel duplicate "same as #3"', by="amy", user_id=8, association="MEMBER"),
        "c-2",
        "issue_comment",
    )

    assert github.state == "closed" and "cancelled/duplicate" in github.labels
    assert sopguard.intake.store.ledger.memory(REF).last_state == "closed"
    # The report counts it apart (S5.1): the cancellation carried out, not the passer-by's attempt.
    services = services_of(sopguard.app)
    now = utc_now()
    period = ReportQuery(since=now.date() - dt.timedelta(days=30), until=now.date())
    assert (
        gather(services.policy, services.store, period, now + dt.timedelta(seconds=1)).total.cancellations
        == 1
    )


def test_github_a_delay_command_of_the_team_is_a_delay_notice(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "in-progress")

    sopguard.deliver(
        commented(github, '/delay 2026-12-20 "parts are late"', by="mallory", user_id=66),
        "c-1",
        "issue_comment",
    )
    sopguard.deliver(
        commented(github, '/delay 2026-12-20 "parts are late"', by="amy", user_id=8, association="MEMBER"),
        "c-2",
        "issue_comment",
    )

    followed = sopguard.intake.store.ledger.one(REF)
    assert followed is not None
    assert [e.author for e in followed.timeline if isinstance(e, DelayAnnounced)] == ["amy"]


# --- Jira ----------------------------------------------------------------------------------------

REPORTER = "5c5f880629be9642ba529340"


def _jira_comment(fake: FakeJira, body: str, author: str, status: str) -> dict[str, Any]:
    payload = copy.deepcopy(fixture_json("jira", "mattermost__webhook-cloud-comment-created.json"))
    payload["issue"]["key"] = fake.key
    payload["issue"]["fields"]["status"] = {**payload["issue"]["fields"]["status"], "name": status}
    payload["comment"].update(
        id=str(20000 + len(fake.comments)),
        body=body,
        author={"accountId": author, "displayName": author.title()},
    )
    return payload


@pytest.fixture
def jira(no_network: responses.RequestsMock, tmp_path: Path) -> Iterator[tuple[FakeJira, JiraService]]:
    created = copy.deepcopy(fixture_json("jira", "mattermost__webhook-issue-created.json"))
    fake = fake_for(no_network, CLOUD, created)
    sopguard = jira_service(tmp_path, CLOUD)
    sopguard.deliver(created, "created")
    assert sopguard.intake.store.ledger.one(IssueRef("jira", fake.project, fake.key)) is not None
    yield fake, sopguard
    fake.check_against_openapi()


def _jira_texts(fake: FakeJira) -> list[str]:
    return [adf_text(body) for body in fake.our_comments()]


def test_jira_approve_plan_by_someone_without_the_role_is_refused_and_by_a_role_holder_done(
    jira: tuple[FakeJira, JiraService],
) -> None:
    fake, sopguard = jira
    fake.labels.append("risk/high")
    fake.in_role("Developers", users=["agent-rita"])

    sopguard.deliver(_jira_comment(fake, "/approve-plan", "visitor", "Planning"), "c-1")
    assert "plan/approved" not in fake.labels
    assert any(t.startswith("/approve-plan was not carried out.") for t in _jira_texts(fake))

    sopguard.deliver(_jira_comment(fake, "/approve-plan", "agent-rita", "Planning"), "c-2")

    assert {"update": {"labels": [{"add": "plan/approved"}]}} in fake.sent("PUT", issue_path(fake))
    assert _jira_texts(fake)[-1].startswith(
        "/approve-plan from @Agent-Rita is done.\nRule command-approve-plan, SOP S2.2"
    )


def test_jira_accept_is_the_reporters_and_cancel_moves_to_done(jira: tuple[FakeJira, JiraService]) -> None:
    fake, sopguard = jira
    fake.in_role("Service Desk Team", users=["agent-rita"])

    sopguard.deliver(_jira_comment(fake, "/accept", "agent-rita", "Acceptance"), "c-1")
    assert "customer-accepted" not in fake.labels
    sopguard.deliver(_jira_comment(fake, "/accept", REPORTER, "Acceptance"), "c-2")
    assert "customer-accepted" in fake.labels

    sopguard.deliver(
        _jira_comment(fake, '/cancel withdrawn "solved elsewhere"', "agent-rita", "Acceptance"), "c-3"
    )

    assert fake.status == "Done" and "cancelled/withdrawn" in fake.labels


@pytest.mark.parametrize("shape", ["comment_updated", "issue_comment_edited"])
def test_jira_a_command_written_into_an_edited_comment_is_not_the_authors(
    jira: tuple[FakeJira, JiraService], shape: str
) -> None:
    """A Jira admin may edit anyone's comment; the comment's author stays who wrote it first."""
    fake, sopguard = jira
    first = _jira_comment(fake, "Thanks, I will look at it.", REPORTER, "Acceptance")
    sopguard.deliver(first, "c-1")
    edited = copy.deepcopy(first)
    edited["comment"]["body"] = "Thanks, I will look at it.\n/accept"
    edited["comment"]["updateAuthor"] = {"accountId": "agent-rita", "displayName": "Agent-Rita"}
    if shape == "comment_updated":
        edited["webhookEvent"] = "comment_updated"
    else:
        edited.update(webhookEvent="jira:issue_updated", issue_event_type_name=shape)
        edited["user"] = edited["comment"]["updateAuthor"]

    sopguard.deliver(edited, "c-2")

    assert "customer-accepted" not in fake.labels
    assert not any(t.startswith("/accept") for t in _jira_texts(fake))


def test_jira_reject_takes_back_the_acceptance_that_a_comment_event_does_not_show(
    jira: tuple[FakeJira, JiraService],
) -> None:
    """Jira Cloud's comment events carry no labels: what sopguard knows of them is used."""
    fake, sopguard = jira
    ref = IssueRef("jira", fake.project, fake.key)
    sopguard.deliver(_jira_comment(fake, "/accept", REPORTER, "Acceptance"), "c-1")
    followed = sopguard.intake.store.ledger.one(ref)
    assert followed is not None and "customer-accepted" in followed.facts.labels

    sopguard.deliver(_jira_comment(fake, '/reject "the report is missing"', REPORTER, "Acceptance"), "c-2")

    assert "customer-accepted" not in fake.labels and fake.status == "In Progress"
    followed = sopguard.intake.store.ledger.one(ref)
    assert followed is not None and "customer-accepted" not in followed.facts.labels


def test_jira_a_new_plan_in_a_comment_withdraws_the_approval_and_approve_plan_clears_the_change(
    jira: tuple[FakeJira, JiraService],
) -> None:
    fake, sopguard = jira
    fake.in_role("Developers", users=["agent-rita"])
    sopguard.deliver(_jira_comment(fake, "/approve-plan", "agent-rita", "In Progress"), "c-1")
    assert "plan/approved" in fake.labels

    plan = "h3. Plan\nReplace the whole server on Sunday."
    sopguard.deliver(_jira_comment(fake, plan, "agent-sam", "In Progress"), "c-2")

    assert "plan/approved" not in fake.labels and "plan/changed" in fake.labels
    assert any(t.startswith("The approval of the plan was withdrawn.") for t in _jira_texts(fake))

    sopguard.deliver(_jira_comment(fake, "/approve-plan", "agent-rita", "In Progress"), "c-3")

    assert "plan/approved" in fake.labels and "plan/changed" not in fake.labels


def test_github_an_agent_showing_the_customer_how_to_accept_gives_no_command(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "acceptance")
    body = "When you are satisfied, reply with:\n\n```\n/accept\n```"

    sopguard.deliver(
        commented(github, body, by="amy", user_id=8, association="MEMBER"), "c-1", "issue_comment"
    )
    quoted = "> reply with:\n> /accept\n\nNot yet, the printer still jams."
    sopguard.deliver(
        commented(github, quoted, by="Codertocat", user_id=REPORTER_ID, association="OWNER"),
        "c-2",
        "issue_comment",
    )

    assert "customer-accepted" not in github.labels
    assert _answers(github) == [] and github.reactions == []


def test_jira_the_reporter_quoting_the_instructions_does_not_accept(
    jira: tuple[FakeJira, JiraService],
) -> None:
    fake, sopguard = jira
    body = "{quote}\nWhen you are satisfied, reply with\n/accept\n{quote}\nNot yet, the printer still jams."

    sopguard.deliver(_jira_comment(fake, body, REPORTER, "Acceptance"), "c-1")

    assert "customer-accepted" not in fake.labels
    assert not any(t.startswith("/accept") for t in _jira_texts(fake))
