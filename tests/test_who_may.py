"""Who may (issue 10), clause by clause, on GitHub and on Jira: the wrong person's action is refused
(undone where it changed something) and explained, and the right person's stands.

One issue on each tracker, with the same cast: the customer who reported it (Carol), the agent it
is assigned to (Amy, of the service team), a reviewer of the team (Rita, an approver), another
agent (Sam) and a passer-by (Mallory). On GitHub the team is who GitHub reports as a member or
collaborator; on Jira, holders of the project role Developers. Each test drives the tracker's
stand-in (`FakeGithub` of tests/github_support.py, `FakeJira` of tests/jira_support.py, Jira Cloud)
with signed deliveries through the app and the real connectors, and reads the result from the
tracker, the audit log and the ledger. Comments are compared as their readers see them.
"""

from __future__ import annotations

import copy
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from github import Auth

from app import create_app
from config.loader import load_policy
from config.schema import Policy
from config.settings import Settings
from connector.base import Connector
from connector.dry_run import DryRunConnector
from connector.github.connector import GithubConnector
from connector.jira.connector import JiraConnector
from connector.jira.events import User as JiraUser
from connector.jira.events import actor as jira_actor
from policies.ledger import IssueFacts
from policies.models import Actor, IssueRef, Source
from policies.sla import Commented, DelayAnnounced, SectionWritten, TimelineEvent
from policies.workflow import jira_state
from runtime.services import Services, utc_now
from runtime.store import Store
from runtime.store.ledger import LedgerUpdate
from tests.conftest import GITHUB_SECRET, JIRA_SECRET, drain, fixture_json, github_headers, jira_headers
from tests.github_support import REPO, FakeGithub, add_checklist, form_body
from tests.jira_support import CLOUD, DATA_CENTER, FakeJira, adf_text, status_json, subtask_json

POLICY = load_policy()
PLAN = {
    "github": "### Plan\n\nReplace the disk on Saturday.",
    "jira": "h3. Plan\nReplace the disk on Saturday.",
}
NEW_PLAN = {
    "github": "### Plan\n\nReplace the whole server on Sunday.",
    "jira": "h3. Plan\nReplace the whole server on Sunday.",
}
# GitHub: login, user id, the association GitHub reports with their comments.
GITHUB_PEOPLE = {
    "carol": ("carol", 101, "NONE"),
    "amy": ("amy", 102, "MEMBER"),
    "rita": ("rita", 103, "COLLABORATOR"),
    "sam": ("sam", 104, "MEMBER"),
    "mallory": ("mallory", 105, "NONE"),
}
TEAM = ("amy", "rita", "sam")  # GitHub collaborators; holders of the Jira project role Developers
JIRA_KEY = "OPS-7"
# Past planning, an issue has its preparation (S3.1), made when planning started, done.
PREPARED = frozenset(
    {"customer-confirmation", "in-progress", "verification", "acceptance", "waiting-for-customer"}
)


def preparation_titles() -> list[str]:
    checklist = POLICY.checklist("preparation")
    assert checklist is not None
    return [f"{checklist.title.en}: {item.en}" for item in checklist.items]


def plain(text: str) -> str:
    """A comment as its reader sees it: no Markdown marks, no hidden marker, one space between words."""
    text = re.sub(r"<!-- sopguard:.*? -->", "", text).replace("**", "").replace("`", "")
    return " ".join(text.split())


class Desk(ABC):
    """One issue on one tracker, followed by sopguard, and the people who act on it."""

    source: Source

    def __init__(self, mock: responses.RequestsMock, data_dir: Path, policy: Policy) -> None:
        self.mock, self.data_dir, self.policy = mock, data_dir, policy
        self.sequence = 0

    # --- what people do -------------------------------------------------------------------

    @abstractmethod
    def start(self, state: str, *labels: str, body: str = "", prepared: bool = False) -> None:
        """The issue as sopguard already follows it: in `state`, with these labels and body; its
        preparation done when past planning, or when `prepared`."""

    @abstractmethod
    def say(self, who: str, text: str) -> str:
        """`who` comments `text`; the comment's id."""

    @abstractmethod
    def label(self, who: str, label: str) -> None:
        """`who` adds `label`."""

    @abstractmethod
    def edit(self, who: str, body: str) -> None:
        """`who` rewrites the issue's own text (the GitHub body, the Jira description) as `body`."""

    @abstractmethod
    def move(self, who: str, state: str) -> None:
        """`who` moves the issue to `state` (a status label on GitHub, a status on Jira)."""

    # --- what it leads to -----------------------------------------------------------------

    @property
    @abstractmethod
    def labels(self) -> set[str]: ...

    @property
    @abstractmethod
    def state(self) -> str: ...

    @abstractmethod
    def answers(self) -> list[str]:
        """sopguard's comments, as their readers see them (see `plain`)."""

    @abstractmethod
    def done(self, command: str, comment_id: str, who: str) -> bool:
        """Whether sopguard acknowledged the command as carried out (👍 on GitHub, a comment on Jira)."""

    @property
    @abstractmethod
    def ref(self) -> IssueRef: ...

    @property
    @abstractmethod
    def services(self) -> Services: ...

    def name(self, who: str) -> str:
        """How the tracker names the person in comments (the GitHub login, the Jira display name)."""
        return who if self.source == "github" else who.title()

    def login(self, who: str) -> str:
        """How sopguard records the person (the GitHub login; Jira's user name, else display name)."""
        return who if self.source == "github" else who.title()

    def timeline(self) -> tuple[TimelineEvent, ...]:
        followed = self.services.store.ledger.one(self.ref)
        assert followed is not None
        return followed.timeline

    def passed(self, rule_id: str) -> list[bool | None]:
        """The verdicts of a rule in the audit log, oldest first."""
        entries = self.services.store.audit.entries()
        return [e.passed for e in sorted(entries, key=lambda e: e.at) if e.rule_id == rule_id]

    def answer(self, starting: str) -> str:
        (found,) = [text for text in self.answers() if text.startswith(starting)]
        return found

    def _services(self, connector: Connector, settings: Settings) -> Services:
        connectors: dict[Source, Connector] = {"github": DryRunConnector(), "jira": DryRunConnector()}
        connectors[self.source] = connector
        return Services(settings, self.policy, Store(settings.resolved_database_url), connectors)

    def _remember(self, state: str, facts: IssueFacts) -> None:
        store = self.services.store
        with store.engine.begin() as db:
            store.ledger.write(db, self.ref, LedgerUpdate(facts, (), {}, state=state), utc_now())


class GithubDesk(Desk):
    source: Source = "github"

    def __init__(self, mock: responses.RequestsMock, data_dir: Path, policy: Policy) -> None:
        super().__init__(mock, data_dir, policy)
        self.github = FakeGithub(mock)
        self.github.collaborators.update(TEAM)
        self.body = ""
        settings = Settings(data_dir=data_dir, github_webhook_secret=GITHUB_SECRET)
        connector = GithubConnector(auth=Auth.Token("test-token"), sleep=lambda _: None)
        self._app: Flask = create_app(settings, self._services(connector, settings))

    @property
    def services(self) -> Services:
        services: Services = self._app.extensions["sopguard.services"]
        return services

    @property
    def ref(self) -> IssueRef:
        return IssueRef("github", REPO, "1")

    def start(self, state: str, *labels: str, body: str = "", prepared: bool = False) -> None:
        self.body = form_body() + ("\n\n" + body if body else "")
        closed = state in self.policy.trackers.github.closed_states
        self.github.state = "closed" if closed else "open"
        status = [] if closed else [self.policy.trackers.github.status_label(state)]
        settled = self.policy.trackers.github.priority_label("P4")  # what the form's answers give
        self.github.labels = [*status, settled, *labels]
        if prepared or state in PREPARED:
            add_checklist(self.github, "preparation")
        self._remember(state, IssueFacts(not closed, "P2", "carol", ("amy",), frozenset(self.github.labels)))

    def _person(self, who: str) -> dict[str, Any]:
        login, user_id, _ = GITHUB_PEOPLE[who]
        return {"login": login, "id": user_id, "type": "User"}

    def _issue(self) -> dict[str, Any]:
        self.sequence += 1
        issue: dict[str, Any] = copy.deepcopy(fixture_json("github", "issues__opened.json")["issue"])
        issue.update(
            user=self._person("carol"),
            author_association="NONE",
            assignees=[self._person("amy")],
            assignee=self._person("amy"),
            body=self.body,
            state=self.github.state,
            labels=[{"name": name} for name in self.github.labels],
            updated_at=f"2026-11-24T02:{self.sequence // 60:02d}:{self.sequence % 60:02d}Z",
            created_at="2026-11-23T02:00:00Z",  # a day before: the resolution deadline is still ahead
        )
        return issue

    def _deliver(self, event: str, payload: dict[str, Any], delivery_id: str = "") -> None:
        body = json.dumps(payload).encode()
        headers = github_headers(body, event, delivery_id or f"d-{self.sequence}")
        answer = self._app.test_client().post("/webhooks/github", data=body, headers=headers)
        assert answer.status_code in (200, 202), answer.get_json()
        drain(self._app)

    def deliver_late(self, event: str, payload: dict[str, Any], delivery_id: str) -> None:
        """A delivery written earlier (`comment_written`, `edit_made`) that GitHub sends only now."""
        self._deliver(event, payload, delivery_id)

    def comment_written(self, who: str, text: str) -> tuple[dict[str, Any], str]:
        """The comment on GitHub, and its delivery (not sent), with the comment's id."""
        _, _, association = GITHUB_PEOPLE[who]
        payload = copy.deepcopy(fixture_json("github", "issue_comment__created.json"))
        payload["issue"] = self._issue()
        comment_id = 7000 + self.sequence
        comment = {
            "id": comment_id,
            "body": text,
            "user": self._person(who),
            "created_at": "2026-11-24T02:00:00Z",
        }
        payload["comment"].update(comment, author_association=association)
        payload["sender"] = self._person(who)
        self.github.comments.append(comment)
        return payload, str(comment_id)

    def say(self, who: str, text: str) -> str:
        payload, comment_id = self.comment_written(who, text)
        self._deliver("issue_comment", payload)
        return comment_id

    def label(self, who: str, label: str) -> None:
        self.github.labels.append(label)
        payload = copy.deepcopy(fixture_json("github", "issues__labeled.json"))
        payload.update(issue=self._issue(), label={"name": label}, sender=self._person(who))
        self._deliver("issues", payload)

    def edit_made(self, who: str, body: str) -> dict[str, Any]:
        """The issue's text edited on GitHub, and the edit's delivery (not sent)."""
        before, self.body = self.body, form_body() + "\n\n" + body
        payload = copy.deepcopy(fixture_json("github", "issues__edited.json"))
        payload.update(issue=self._issue(), changes={"body": {"from": before}}, sender=self._person(who))
        return payload

    def edit(self, who: str, body: str) -> None:
        self._deliver("issues", self.edit_made(who, body))

    def move(self, who: str, state: str) -> None:
        self.label(who, self.policy.trackers.github.status_label(state))

    @property
    def labels(self) -> set[str]:
        return set(self.github.labels)

    @property
    def state(self) -> str:
        if self.github.state == "closed":
            return self.policy.trackers.github.closed_states[0]
        prefix = self.policy.trackers.github.status_label_prefix
        (status,) = [label.removeprefix(prefix) for label in self.github.labels if label.startswith(prefix)]
        return status

    def answers(self) -> list[str]:
        return [plain(body) for body in self.github.our_comments()]

    def done(self, command: str, comment_id: str, who: str) -> bool:
        return (int(comment_id), "+1") in self.github.reactions


class JiraDesk(Desk):
    """Jira Cloud: people by account id, comments in ADF; a comment event shows some fields."""

    source: Source = "jira"
    deployment = CLOUD

    def __init__(self, mock: responses.RequestsMock, data_dir: Path, policy: Policy) -> None:
        super().__init__(mock, data_dir, policy)
        self.jira = FakeJira(mock, self.deployment, key=JIRA_KEY, status="To Do")
        self.jira.in_role("Developers", users=[self._person(who)[self.identity] for who in TEAM])
        self.body = ""
        settings = self.deployment.settings(
            Settings(data_dir=data_dir, jira_webhook_secret=JIRA_SECRET, trackers=["jira"])
        )
        connector = JiraConnector.from_settings(settings, policy, sleep=lambda _: None)
        self._app = create_app(settings, self._services(connector, settings))

    @property
    def services(self) -> Services:
        services: Services = self._app.extensions["sopguard.services"]
        return services

    @property
    def ref(self) -> IssueRef:
        return IssueRef("jira", "OPS", JIRA_KEY)

    identity = "accountId"

    @staticmethod
    def _person(who: str) -> dict[str, Any]:
        return {"accountId": f"acc-{who}", "displayName": who.title(), "accountType": "atlassian"}

    def _shown(self) -> str:
        """The fields a comment event shows: Cloud's a few, Data Center's `comment_created` none."""
        return "some"

    def _status(self, state: str) -> str:
        return self.policy.trackers.jira.statuses[state][0]

    def start(self, state: str, *labels: str, body: str = "", prepared: bool = False) -> None:
        self.body = body
        self.jira.status = self._status(state)
        self.jira.labels = list(labels)
        if prepared or state in PREPARED:
            self.jira.subtasks = [
                subtask_json(f"OPS-{60 + n}", title, "Done") for n, title in enumerate(preparation_titles())
            ]
        carol, amy = self._actor("carol"), self._actor("amy")
        facts = IssueFacts(
            state not in self.policy.trackers.github.closed_states,
            "P2",
            carol.login,
            (amy.login,),
            frozenset(labels),
            reporter_id=carol.id,
        )
        self._remember(state, facts)

    def _actor(self, who: str) -> Actor:
        return jira_actor(JiraUser.model_validate(self._person(who)))

    def _fields(self, *, full: bool) -> dict[str, Any]:
        """The fields a delivery shows: a comment event only some (no labels, reporter or description)."""
        fields: dict[str, Any] = {
            "summary": "The billing portal answers 502",
            "status": status_json(self.jira.status),
            "assignee": self._person("amy"),
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task", "subtask": False},
            "subtasks": list(self.jira.subtasks),
        }
        if full:
            fields.update(
                reporter=self._person("carol"), labels=list(self.jira.labels), description=self.body
            )
        return fields

    def _deliver(self, payload: dict[str, Any]) -> None:
        self.sequence += 1
        payload["timestamp"] = 1795000000000 + self.sequence * 1000
        body = json.dumps(payload).encode()
        answer = self._app.test_client().post(
            "/webhooks/jira", data=body, headers=jira_headers(body, f"d-{self.sequence}")
        )
        assert answer.status_code in (200, 202), answer.get_json()
        drain(self._app)

    def _updated(self, who: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_generic",
            "user": self._person(who),
            "issue": {"id": "10007", "key": JIRA_KEY, "fields": self._fields(full=True)},
            "changelog": {"id": "1", "items": items},
        }

    def say(self, who: str, text: str) -> str:
        comment_id = str(20000 + self.sequence)
        comment = {
            "id": comment_id,
            "author": self._person(who),
            "body": text,
            "created": "2026-11-24T10:00:00.000+0800",
        }
        self.jira.comments.append(comment)
        self._deliver(
            {
                "webhookEvent": "comment_created",
                "comment": comment,
                "issue": {
                    "id": "10007",
                    "key": JIRA_KEY,
                    "fields": self._fields(full=False) if self._shown() == "some" else {},
                },
            }
        )
        return comment_id

    def label(self, who: str, label: str) -> None:
        before = " ".join(self.jira.labels)
        self.jira.labels.append(label)
        item = {
            "field": "labels",
            "fieldtype": "jira",
            "fromString": before,
            "toString": " ".join(self.jira.labels),
        }
        self._deliver(self._updated(who, [item]))

    def edit(self, who: str, body: str) -> None:
        before, self.body = self.body, body
        item = {"field": "description", "fieldtype": "jira", "fromString": before, "toString": body}
        self._deliver(self._updated(who, [item]))

    def move(self, who: str, state: str) -> None:
        before, self.jira.status = self.jira.status, self._status(state)
        item = {"field": "status", "fieldtype": "jira", "fromString": before, "toString": self.jira.status}
        self._deliver(self._updated(who, [item]))

    @property
    def labels(self) -> set[str]:
        return set(self.jira.labels)

    @property
    def state(self) -> str:
        found = jira_state(self.policy, self.jira.status)
        assert found is not None
        return found

    def answers(self) -> list[str]:
        return [plain(adf_text(body)) for body in self.jira.our_comments()]

    def done(self, command: str, comment_id: str, who: str) -> bool:
        return any(text.startswith(f"/{command} from @{self.name(who)} is done.") for text in self.answers())


class DataCenterDesk(JiraDesk):
    """Jira Data Center: people by user name, comments in wiki markup; `comment_created` shows no
    field of the issue."""

    deployment = DATA_CENTER
    identity = "name"

    @staticmethod
    def _person(who: str) -> dict[str, Any]:
        return {"name": who, "key": f"JIRAUSER-{who}", "displayName": who.title()}

    def _shown(self) -> str:
        return "none"

    def login(self, who: str) -> str:
        return who

    def answers(self) -> list[str]:
        """Wiki markup as its reader sees it: `[~name]` is the person's name, `*` and `{{ }}` marks."""
        texts = (
            re.sub(r"\[~([^\]]+)\]", lambda m: "@" + m[1].title(), str(body))
            for body in self.jira.our_comments()
        )
        unmarked = (
            re.sub(r"\\([^\w\s])", r"\1", t.replace("*", "").replace("{{", "").replace("}}", ""))
            for t in texts
        )
        return [plain(text) for text in unmarked]


DESKS: dict[str, type[Desk]] = {"github": GithubDesk, "jira": JiraDesk, "jira-dc": DataCenterDesk}


@pytest.fixture(params=sorted(DESKS))
def desk(
    request: pytest.FixtureRequest, no_network: responses.RequestsMock, tmp_path: Path
) -> Iterator[Desk]:
    chosen: Desk = DESKS[request.param](no_network, tmp_path, POLICY)
    yield chosen
    if isinstance(chosen, JiraDesk):
        chosen.jira.check_against_openapi()


def not_allowed(desk: Desk, command: str, who: str, only: str) -> str:
    return f"/{command} was not carried out. @{desk.name(who)} may not give it: only {only}."


# --- S2.2: a high-risk plan is approved by a reviewer, never by its owner or its author ----------


def test_s2_2_the_approval_label_of_the_owner_is_removed_and_a_reviewers_stays(desk: Desk) -> None:
    desk.start("planning", "risk/high", body=PLAN[desk.source])

    desk.label("amy", "plan/approved")

    assert "plan/approved" not in desk.labels
    assert desk.answer('The label "plan/approved" was removed.') == (
        f'The label "plan/approved" was removed. @{desk.name("amy")} may not add it: only approvers may, '
        "and never the assignee, the plan's author. The plan carries the plan/approved label from its "
        "internal review (/approve-plan), unless an approver judged it low-risk (/low-risk). Rule "
        "plan-reviewed, SOP S2.2: Write a service plan (steps, time, risks, resources); high-risk plans "
        "pass an internal review."
    )

    desk.label("rita", "plan/approved")

    assert "plan/approved" in desk.labels and len(desk.answers()) == 1
    assert desk.passed("plan-reviewed") == [False, True]


def test_s2_2_approve_plan_by_the_owner_or_the_plans_author_is_refused_and_by_a_reviewer_done(
    desk: Desk,
) -> None:
    desk.start("planning", "risk/high")
    desk.say("sam", NEW_PLAN[desk.source])  # Sam writes the plan; Amy owns the issue

    desk.say("amy", "/approve-plan")
    desk.say("sam", "Reviewed it myself.\n/approve-plan")

    assert "plan/approved" not in desk.labels
    refusals = [text for text in desk.answers() if text.startswith("/approve-plan was not carried out.")]
    never = "approvers may, and never the assignee, the plan's author"
    assert [text.split(" Rule ")[0] for text in refusals] == [
        not_allowed(desk, "approve-plan", "amy", never),
        not_allowed(desk, "approve-plan", "sam", never),
    ]

    approval = desk.say("rita", "LGTM\n/approve-plan")

    assert "plan/approved" in desk.labels and desk.done("approve-plan", approval, "rita")


def test_s2_2_whoever_wrote_the_plan_into_the_issue_cannot_approve_it(desk: Desk) -> None:
    desk.start("planning", "risk/high")
    desk.edit("rita", PLAN[desk.source])  # Rita, an approver, writes the plan into the issue itself

    desk.say("rita", "/approve-plan")
    desk.label("rita", "plan/approved")

    assert "plan/approved" not in desk.labels
    never = "approvers may, and never the assignee, the plan's author"
    assert desk.answer("/approve-plan was not carried out.").startswith(
        not_allowed(desk, "approve-plan", "rita", never)
    )
    assert desk.answer('The label "plan/approved" was removed.').startswith(
        f'The label "plan/approved" was removed. @{desk.name("rita")} may not add it: only {never}.'
    )

    approval = desk.say("sam", "/approve-plan")

    assert "plan/approved" in desk.labels and desk.done("approve-plan", approval, "sam")


# --- S2.2: every plan is reviewed, unless an approver judged it low-risk -------------------------

NEVER_THE_REVIEWED = "approvers may, and never the assignee, the plan's author"
REVIEW_MISSING = (
    "The plan carries the plan/approved label from its internal review (/approve-plan), unless an "
    "approver judged it low-risk (/low-risk) (rule plan-reviewed, SOP S2.2"
)


def undone(desk: Desk) -> list[str]:
    return [text for text in desk.answers() if text.startswith("This change of stage was undone.")]


def test_s2_2_the_owner_cannot_start_an_unreviewed_plan_nor_judge_it_low_risk(desk: Desk) -> None:
    desk.start("planning", body=PLAN[desk.source], prepared=True)

    desk.move("amy", "in-progress")

    assert desk.state == "planning"  # undone: nobody labelled it, so it is reviewed
    assert REVIEW_MISSING in desk.answer("This change of stage was undone.")

    desk.label("amy", "risk/low")
    desk.say("amy", "/low-risk")

    assert "risk/low" not in desk.labels
    assert desk.answer('The label "risk/low" was removed.') == (
        f'The label "risk/low" was removed. @{desk.name("amy")} may not add it: only {NEVER_THE_REVIEWED}. '
        "Only an approver judges a plan low-risk, so that it needs no internal review (/low-risk). Rule "
        "low-risk-judged-by-approvers, SOP S2.2: Write a service plan (steps, time, risks, resources); "
        "high-risk plans pass an internal review."
    )
    assert desk.answer("/low-risk was not carried out.").startswith(
        not_allowed(desk, "low-risk", "amy", NEVER_THE_REVIEWED)
    )

    desk.move("amy", "in-progress")

    assert desk.state == "planning" and len(undone(desk)) == 2
    assert desk.passed("plan-reviewed") == [False, False]
    assert desk.passed("low-risk-judged-by-approvers") == [False]


def test_s2_2_the_plans_author_cannot_judge_it_low_risk_though_an_approver(desk: Desk) -> None:
    desk.start("planning", prepared=True)
    desk.say("sam", NEW_PLAN[desk.source])  # Sam, of the approvers, writes the plan; Amy owns the issue

    desk.label("sam", "risk/low")
    desk.say("sam", "Small change.\n/low-risk")
    desk.move("amy", "in-progress")

    assert "risk/low" not in desk.labels and desk.state == "planning"
    assert desk.answer('The label "risk/low" was removed.').startswith(
        f'The label "risk/low" was removed. @{desk.name("sam")} may not add it: only {NEVER_THE_REVIEWED}.'
    )
    assert desk.answer("/low-risk was not carried out.").startswith(
        not_allowed(desk, "low-risk", "sam", NEVER_THE_REVIEWED)
    )
    assert REVIEW_MISSING in desk.answer("This change of stage was undone.")


@pytest.mark.parametrize("how", ["command", "label"])
def test_s2_2_an_approvers_low_risk_judgement_lets_the_work_start_without_review(
    desk: Desk, how: str
) -> None:
    desk.start("planning", body=PLAN[desk.source], prepared=True)

    if how == "command":
        judged = desk.say("rita", "A disk swap we do every week.\n/low-risk")
        assert desk.done("low-risk", judged, "rita")
    else:
        desk.label("rita", "risk/low")
    desk.move("amy", "in-progress")

    assert "risk/low" in desk.labels and "plan/approved" not in desk.labels
    assert desk.state == "in-progress" and not undone(desk)
    assert desk.passed("plan-reviewed") == [True]


def test_s2_2_an_approvers_review_lets_the_work_start(desk: Desk) -> None:
    desk.start("planning", body=PLAN[desk.source], prepared=True)

    approval = desk.say("rita", "LGTM\n/approve-plan")
    desk.move("amy", "in-progress")

    assert desk.done("approve-plan", approval, "rita")
    assert desk.state == "in-progress" and not undone(desk)
    assert desk.passed("plan-reviewed") == [True]


def test_s2_2_a_plan_changed_after_its_low_risk_judgement_is_judged_or_reviewed_again(desk: Desk) -> None:
    desk.start("planning", body=PLAN[desk.source], prepared=True)
    desk.say("rita", "/low-risk")

    desk.say("sam", "The disk is not enough.\n\n" + NEW_PLAN[desk.source])

    assert "risk/low" not in desk.labels and "plan/changed" in desk.labels
    assert desk.answer("The judgement of the plan as low-risk was withdrawn.").startswith(
        f"The judgement of the plan as low-risk was withdrawn. @{desk.name('sam')} changed the plan "
        'judged low-risk, so "risk/low" was removed and "plan/changed" added. The changed plan needs an '
        "approver's review (/approve-plan), or their judgement that it is low-risk (/low-risk). "
        "Rule changed-plan-needs-approval, SOP S3.2:"
    )
    desk.move("amy", "in-progress")
    assert desk.state == "planning" and REVIEW_MISSING in desk.answer("This change of stage was undone.")

    judged = desk.say("rita", "Still a small change.\n/low-risk")
    desk.move("amy", "in-progress")

    assert desk.done("low-risk", judged, "rita")
    assert "risk/low" in desk.labels and "plan/changed" not in desk.labels
    assert desk.state == "in-progress"


def test_s2_2_low_risk_waives_no_review_of_a_plan_labelled_high_risk(desk: Desk) -> None:
    desk.start("planning", "risk/high", body=PLAN[desk.source], prepared=True)

    desk.say("rita", "/low-risk")
    desk.move("amy", "in-progress")

    assert desk.state == "planning"
    assert "A high-risk plan carries the plan/approved label from its internal review, even when also " in (
        desk.answer("This change of stage was undone.")
    )

    desk.say("sam", "/approve-plan")
    desk.move("amy", "in-progress")

    assert desk.state == "in-progress"
    assert desk.passed("high-risk-plan-reviewed") == [False, True]


# --- S2.4: the customer confirms the plan themselves ----------------------------------------------


def test_s2_4_the_agents_confirmation_is_refused_and_the_customers_lets_the_work_start(desk: Desk) -> None:
    desk.start("customer-confirmation", "plan/approved", body=PLAN[desk.source])  # reviewed in planning

    desk.label("amy", "customer-confirmed")
    assert "customer-confirmed" not in desk.labels
    assert desk.answer('The label "customer-confirmed" was removed.').startswith(
        f'The label "customer-confirmed" was removed. @{desk.name("amy")} may not add it: only the '
        "reporter may. The customer confirmed the plan (the reporter's /confirm: the customer-confirmed "
        "label). Rule customer-confirmation-recorded, SOP S2.4:"
    )
    desk.say("amy", "/confirm")
    assert "customer-confirmed" not in desk.labels
    assert desk.answer("/confirm was not carried out.").startswith(
        not_allowed(desk, "confirm", "amy", "the reporter may")
    )

    confirmation = desk.say("carol", "Yes, go ahead.\n/confirm")
    desk.move("amy", "in-progress")

    assert "customer-confirmed" in desk.labels and desk.done("confirm", confirmation, "carol")
    assert desk.state == "in-progress"
    assert desk.passed("customer-confirmation-recorded") == [False, True]  # Amy's label, then the move


# --- S4.2: the customer accepts the result -------------------------------------------------------


def test_s4_2_the_agents_acceptance_is_refused_and_the_customers_stands(desk: Desk) -> None:
    desk.start("acceptance")

    desk.label("amy", "customer-accepted")
    assert "customer-accepted" not in desk.labels
    assert desk.answer('The label "customer-accepted" was removed.').startswith(
        f'The label "customer-accepted" was removed. @{desk.name("amy")} may not add it: only the '
        "reporter may. The customer accepted the result (the reporter's /accept: the customer-accepted "
        "label). Rule customer-accepted-in-person, SOP S4.2: The customer accepts the result."
    )
    desk.say("amy", "/accept")
    assert desk.answer("/accept was not carried out.") == (
        not_allowed(desk, "accept", "amy", "the reporter may")
        + " Rule command-accept, SOP S4.2: The customer accepts the result."
    )

    acceptance = desk.say("carol", "Works again, thank you.\n/accept")

    assert "customer-accepted" in desk.labels and desk.done("accept", acceptance, "carol")


def test_s4_2_reject_is_the_customers_needs_a_reason_and_takes_the_acceptance_back(desk: Desk) -> None:
    desk.start("acceptance", "customer-accepted")

    desk.say("amy", '/reject "the customer said so on the phone"')
    desk.say("carol", "/reject")

    assert desk.state == "acceptance" and "customer-accepted" in desk.labels
    assert desk.answer("/reject was not carried out. @").startswith(
        not_allowed(desk, "reject", "amy", "the reporter may")
    )
    assert desk.answer("/reject was not carried out. Write").startswith(
        '/reject was not carried out. Write it as: /reject "reason" Rule command-reject, SOP S4.2:'
    )

    rejection = desk.say("carol", '/reject "the report is missing"')

    assert desk.state == "in-progress" and "customer-accepted" not in desk.labels
    assert desk.done("reject", rejection, "carol")


# --- S3.2: a changed plan needs approval again -----------------------------------------------------


def test_s3_2_a_changed_plan_withdraws_the_approval_and_holds_the_issue_until_approved_again(
    desk: Desk,
) -> None:
    desk.start("in-progress", "plan/approved", body=PLAN[desk.source])

    desk.say("sam", "The disk is not enough.\n\n" + NEW_PLAN[desk.source])

    assert "plan/approved" not in desk.labels and "plan/changed" in desk.labels
    assert desk.answer("The approval of the plan was withdrawn.").startswith(
        f"The approval of the plan was withdrawn. @{desk.name('sam')} changed the approved plan, so "
        '"plan/approved" was removed and "plan/changed" added. The work can go on, but this issue '
        "cannot move on until the changed plan is approved again (/approve-plan). Rule "
        "changed-plan-needs-approval, SOP S3.2:"
    )

    desk.move("amy", "verification")

    assert desk.state == "in-progress"  # undone
    undone = desk.answer("This change of stage was undone.")
    assert "A changed plan is approved again (/approve-plan) (rule changed-plan-approved, SOP S3.2" in undone
    assert desk.passed("changed-plan-approved") == [False]

    approval = desk.say("rita", "/approve-plan")
    assert desk.done("approve-plan", approval, "rita")
    assert "plan/approved" in desk.labels and "plan/changed" not in desk.labels
    desk.move("amy", "verification")  # still held by its other guards, no longer by the change

    assert desk.passed("changed-plan-approved") == [False, True]


# --- S3.2: the key steps are recorded by those who do the work ------------------------------------

KEY_STEPS = {
    "github": "### Key steps\n\nReplaced the disk; restored from the night's backup.",
    "jira": "h3. Key steps\nReplaced the disk; restored from the night's backup.",
}


def test_s3_2_a_passer_bys_key_steps_do_not_count_and_the_teams_do(desk: Desk) -> None:
    desk.start("in-progress", "plan/approved", body=PLAN[desk.source], prepared=True)

    desk.say("mallory", KEY_STEPS[desk.source])
    desk.move("amy", "verification")

    assert desk.state == "in-progress"  # undone
    undone = desk.answer("This change of stage was undone.").replace("\N{WORD JOINER}", "")  # no mention
    assert (
        "The key steps and data are recorded (### Key steps) in the issue or a comment: a Key steps "
        f"section by @{desk.login('mallory')}: only the service team may write it (rule "
        "key-steps-recorded, SOP S3.2" in undone
    )
    assert desk.passed("key-steps-recorded") == [False]

    desk.say("sam", KEY_STEPS[desk.source])
    desk.move("amy", "verification")

    assert desk.state == "verification"
    assert desk.passed("key-steps-recorded") == [False, True]


def test_s3_2_key_steps_the_customer_writes_into_the_issue_do_not_count_and_the_agents_do(
    desk: Desk,
) -> None:
    desk.start("in-progress", "plan/approved", body=PLAN[desk.source], prepared=True)

    desk.edit("carol", f"{PLAN[desk.source]}\n\n{KEY_STEPS[desk.source]}")
    desk.move("amy", "verification")

    assert desk.state == "in-progress"
    undone = desk.answer("This change of stage was undone.").replace("\N{WORD JOINER}", "")
    assert f"a Key steps section by @{desk.login('carol')}: only the service team may write it" in undone

    desk.edit("amy", f"{PLAN[desk.source]}\n\n{KEY_STEPS[desk.source]}\n\nChecked the logs.")
    desk.move("amy", "verification")

    assert desk.state == "verification"
    assert desk.passed("key-steps-recorded") == [False, True]


def test_s3_2_the_teams_key_steps_in_a_comment_count_when_the_customers_in_the_issue_do_not(
    desk: Desk,
) -> None:
    """The comments are read for the guard once the issue's own section turns out not to count."""
    desk.start("in-progress", "plan/approved", body=PLAN[desk.source])
    desk.edit("carol", f"{PLAN[desk.source]}\n\n{KEY_STEPS[desk.source]}")
    desk.say("sam", KEY_STEPS[desk.source])
    desk.move("amy", "verification")

    assert desk.state == "verification"
    assert desk.passed("key-steps-recorded") == [True]


def test_s3_2_key_steps_in_the_issue_before_sopguard_saw_them_written_count(desk: Desk) -> None:
    """Followed since before this release recorded who writes a section (or adopted with it):
    nobody can be told they wrote it, so it counts rather than being laid at the reporter's door."""
    desk.start("in-progress", "plan/approved", body=f"{PLAN[desk.source]}\n\n{KEY_STEPS[desk.source]}")
    desk.move("amy", "verification")

    assert desk.state == "verification"
    assert desk.passed("key-steps-recorded") == [True]
    assert [e for e in desk.timeline() if isinstance(e, SectionWritten)] == []


def test_s3_2_an_agents_edit_delivered_late_still_makes_her_the_key_steps_writer(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Amy's edit of the key steps arrives after her move (GitHub redelivered it late): the move is
    refused on what sopguard knew (the customer's), and the late edit, history, still records her."""
    desk = GithubDesk(no_network, tmp_path, POLICY)
    desk.start("in-progress", "plan/approved", body=PLAN["github"], prepared=True)
    desk.edit("carol", f"{PLAN['github']}\n\n{KEY_STEPS['github']}")
    held = desk.edit_made("amy", f"{PLAN['github']}\n\n{KEY_STEPS['github']} Logs kept.")

    desk.move("amy", "verification")  # delivered first
    assert desk.state == "in-progress"
    desk.deliver_late("issues", held, "late-edit")
    desk.move("amy", "verification")

    written = [e.author for e in desk.timeline() if isinstance(e, SectionWritten)]
    assert written == ["carol", "amy"]
    assert desk.state == "verification"
    assert desk.passed("key-steps-recorded") == [False, True]


def test_s3_3_a_delay_notice_delivered_late_is_still_recorded_as_given(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Sam's public delay notice reaches sopguard after a later change of the issue (a redelivery):
    history, so nothing is undone or answered, but the customer was told, and the ledger says so."""
    desk = GithubDesk(no_network, tmp_path, POLICY)
    desk.start("in-progress", "plan/approved", body=PLAN["github"], prepared=True)
    notice = "### Delay\n\nNew date: 2026-12-20\nReason: the replacement disk arrives late."
    held, comment_id = desk.comment_written("sam", notice)

    desk.label("amy", "affects-customer")  # a later change, delivered first
    desk.deliver_late("issue_comment", held, "late-delay")

    delays = [(e.author, e.new_date, e.comment_id) for e in desk.timeline() if isinstance(e, DelayAnnounced)]
    assert delays == [("sam", "2026-12-20", comment_id)]
    (entry,) = [e for e in desk.services.store.audit.entries() if e.delivery_id == "late-delay"]
    assert entry.outcome == "no action" and "recorded as history" in entry.reasons[0]
    assert not [
        c for c in desk.github.comments if "delay" in c["body"].casefold() and str(c["id"]) != comment_id
    ]


def test_s3_2_the_ledger_records_who_wrote_the_key_steps_into_the_issue(desk: Desk) -> None:
    desk.start("in-progress", "plan/approved", body=PLAN[desk.source])

    desk.edit("amy", f"{PLAN[desk.source]}\n\n{KEY_STEPS[desk.source]}")
    desk.edit("mallory", f"{PLAN[desk.source]}\n\n{KEY_STEPS[desk.source]}")  # the same text: no change
    desk.edit("carol", PLAN[desk.source])  # taken out

    written = [(e.guard, e.author) for e in desk.timeline() if isinstance(e, SectionWritten)]
    assert written == [("key-steps-recorded", desk.login("amy")), ("key-steps-recorded", "")]


# --- S1.4: only the team's public reply is the first response --------------------------------------


def test_s1_4_a_passer_bys_reply_is_not_the_first_response_and_the_teams_is(desk: Desk) -> None:
    desk.start("triage")

    desk.say("mallory", "Same problem here, any news?")
    desk.say("amy", "We are on it: the portal's certificate expired.")

    replies = [(e.author, e.by_responder) for e in desk.timeline() if isinstance(e, Commented)]
    assert replies == [(desk.login("mallory"), False), (desk.login("amy"), True)]
    assert desk.answers() == []  # nothing to undo: the passer-by's reply only does not count


# --- S3.4 / S5.1: a request is cancelled by its reporter or the team, with a reason -----------------


def test_s5_1_cancel_by_a_passer_by_or_without_its_reason_is_refused_and_the_reporters_closes(
    desk: Desk,
) -> None:
    desk.start("triage")

    desk.say("mallory", '/cancel spam "ads"')
    desk.say("amy", "/cancel duplicate")
    desk.say("amy", '/cancel obsolete "nobody needs it"')

    assert desk.state == "triage" and not {"cancelled/spam", "cancelled/duplicate"} & desk.labels
    refusals = [text.split(" Rule ")[0] for text in desk.answers()]
    usage = '/cancel was not carried out. Write it as: /cancel duplicate|spam|withdrawn "reason"'
    assert refusals == [
        not_allowed(desk, "cancel", "mallory", "the reporter, the service team may"),
        usage,
        usage,
    ]

    cancelled = desk.say("carol", '/cancel withdrawn "solved it ourselves"')

    assert desk.state == "closed" and "cancelled/withdrawn" in desk.labels
    assert desk.done("cancel", cancelled, "carol")


# --- S3.3: a delay is announced by the team -------------------------------------------------------


def test_s3_3_delay_by_the_customer_or_with_a_bad_date_is_refused_and_the_teams_is_a_delay_notice(
    desk: Desk,
) -> None:
    desk.start("in-progress")

    desk.say("carol", '/delay 2026-12-20 "I am on holiday"')
    desk.say("amy", '/delay 20.12.2026 "parts are late"')

    assert [text.split(" Rule ")[0] for text in desk.answers()] == [
        not_allowed(desk, "delay", "carol", "the service team may"),
        '/delay was not carried out. Write it as: /delay YYYY-MM-DD "reason"',
    ]
    assert not [e for e in desk.timeline() if isinstance(e, DelayAnnounced)]

    notice = desk.say("amy", '/delay 2026-12-20 "parts are late"')

    assert desk.done("delay", notice, "amy")
    assert [e.author for e in desk.timeline() if isinstance(e, DelayAnnounced)] == [desk.login("amy")]


# --- S5.2: a poor rating of the customer is labelled and brought to the escalation contact ----------

ESCALATION = {"github": "@acme/service-leads", "jira": "Lee Wong (service lead)"}


def test_s5_2_a_passer_bys_poor_rating_is_ignored_and_the_customers_is_escalated(
    no_network: responses.RequestsMock, tmp_path: Path, source: str
) -> None:
    sla = POLICY.sla.model_copy(update={"escalation": ESCALATION})
    desk: Desk = DESKS[source](no_network, tmp_path, POLICY.model_copy(update={"sla": sla}))
    desk.start("closed")

    desk.say("mallory", "1")
    assert "satisfaction/low" not in desk.labels and desk.answers() == []

    desk.say("carol", "2")

    assert "satisfaction/low" in desk.labels
    assert desk.answers() == [
        f"The customer rated this service 2 of 5. {ESCALATION[desk.source]}, please follow up with the "
        "customer on what went wrong. Rule ask-for-rating, SOP S5.2: Follow up on the customer's "
        "satisfaction."
    ]


@pytest.fixture(params=sorted(DESKS))
def source(request: pytest.FixtureRequest) -> str:
    chosen: str = request.param
    return chosen


# --- the README shows these answers as posted ------------------------------------------------------

README = Path(__file__).parents[1] / "README.md"


def _readme_answers() -> set[str]:
    """The GitHub cells of the README's table of command answers (refusals; 👍 is a reaction)."""
    cells = set()
    for line in README.read_text(encoding="utf-8").splitlines():
        columns = [c.strip() for c in re.split(r"(?<!\\)\|", line)]
        if len(columns) == 6 and "was not carried out." in columns[3]:
            cells.add(columns[3].replace("\\|", "|"))
    return cells


def test_the_readmes_answers_are_the_ones_posted(no_network: responses.RequestsMock, tmp_path: Path) -> None:
    desk = GithubDesk(no_network, tmp_path, POLICY)
    desk.start("planning", "risk/high")
    desk.say("amy", "/approve-plan")
    desk.say("amy", "/low-risk")
    desk.start("customer-confirmation", body=PLAN["github"])
    desk.say("amy", "/confirm")
    desk.start("verification")
    desk.say("carol", "/accept")
    desk.start("acceptance")
    desk.say("amy", "/accept")
    desk.say("carol", "/reject")
    desk.say("amy", '/reject "x"')
    desk.start("in-progress")
    desk.say("amy", '/delay 20.12.2026 "parts are late"')
    desk.say("carol", '/delay 2026-12-20 "I am on holiday"')
    desk.start("triage")
    desk.say("amy", '/cancel obsolete "nobody needs it"')
    desk.say("mallory", '/cancel spam "ads"')

    posted = {body.split("\n\n")[0] for body in desk.github.our_comments()}
    shown = _readme_answers()
    assert len(shown) == 11 and shown == posted
