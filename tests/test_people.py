"""Who may: the policy's teams, labels only some people may add (S2.2 four eyes), and the team's
first response (S1.4), on GitHub and on Jira, each with the wrong person refused and the right one kept.

Membership is the connector's to look up (GitHub: the delivery's `author_association`, a
collaborator check, organization team memberships; Jira: project roles and groups), cached; the
engine only reads the answer from the snapshot.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import responses
from github import Auth

from config.loader import PolicyError, parse_policy
from config.schema import Team
from connector.delivery import Delivery
from connector.github.connector import GithubConnector
from connector.github.events import to_event
from policies.engine import evaluate
from policies.ledger import IssueFacts, timeline_entries
from policies.models import (
    Actor,
    ChangeLabels,
    Comment,
    Decision,
    Event,
    EventKind,
    IssueSnapshot,
    PostComment,
    Source,
)
from policies.needs import Needs, needs
from policies.people import guarded_labels
from policies.sla import AdoptedIn, Commented, Created, StateChanged, TimelineEvent
from tests.conftest import fixture_json
from tests.engine_support import GITHUB_REF, JIRA_REF, NOW, move, snapshot_meeting
from tests.github_support import (
    COMMENTED_AT,
    REPO,
    FakeGithub,
    Service,
    add_checklist,
    form_body,
    issue_payload,
    labelled,
    put_in_state,
)
from tests.github_support import REF as HELLO_WORLD
from tests.jira_support import (
    CLOUD,
    DEPLOYMENTS,
    Deployment,
    FakeJira,
    fake_for,
    follow,
    issue_path,
    with_status_change,
)
from tests.jira_support import Service as JiraService
from tests.jira_support import service as jira_service

POLICY = parse_policy((Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8"))
APPROVED = "plan/approved"
ISSUE = f"/repos/{REPO}/issues/1"
PLAN = {
    "github": "### Plan\n\nRestart the cluster node by node.",
    "jira": "h3. Plan\nRestart the cluster node by node.",
}


def _label_event(source: str, actor: Actor, label: str = APPROVED) -> Event:
    return Event(
        source="github" if source == "github" else "jira",
        kinds=frozenset({EventKind.LABELS_CHANGED}),
        delivery_id="d-1",
        actor=actor,
        issue=GITHUB_REF if source == "github" else JIRA_REF,
        labels_after=frozenset({label}),
    )


def _snapshot(source: str, **changes: Any) -> IssueSnapshot:
    base = IssueSnapshot(
        ref=GITHUB_REF if source == "github" else JIRA_REF,
        labels=frozenset({APPROVED}),
        reporter="carol",
        assignees=("dana",),
        body="### Problem description\n\nDown.",
    )
    return replace(base, **changes)


# --- the policy language ------------------------------------------------------------------------


def test_teams_take_the_short_github_form_and_guards_one_name_or_several() -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "  approvers: # the internal review of a plan, and the judgement that one is low-risk (S2.2)\n"
        "    github: {associations: [OWNER, MEMBER, COLLABORATOR]}\n",
        '  approvers: # the reviewers\n    github: [lead-1, "@acme/service-leads"]\n',
    )

    policy = parse_policy(text)

    approvers = policy.teams["approvers"]
    assert approvers.github.users == ["lead-1"] and approvers.github.teams == ["acme/service-leads"]
    guard = guarded_labels(policy)[APPROVED]
    assert guard.id == "plan-reviewed"
    assert guard.by == ["approvers"] and guard.not_by == ["assignee", "author-of-plan"]


def test_a_guard_naming_an_unknown_team_is_refused_with_its_place() -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    text = text.replace("by: approvers", "by: aprovers", 1)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    assert "unknown team 'aprovers'" in str(refused.value)


# --- the engine: four eyes on plan/approved (S2.2) ----------------------------------------------


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_approval_by_someone_outside_the_approvers_is_removed_and_explained(source: str) -> None:
    decision = evaluate(POLICY, _label_event(source, Actor("mallory")), _snapshot(source), NOW)

    remove, comment = decision.actions
    assert remove == ChangeLabels("plan-reviewed", remove=frozenset({APPROVED}))
    assert isinstance(comment, PostComment)
    assert comment.body.startswith('**The label "plan/approved" was removed.**\n@mallory may not add it:')
    assert "only approvers may, and never the assignee, the plan's author." in comment.body
    assert comment.body.rstrip().endswith("Rule `plan-reviewed`, SOP S2.2: " + POLICY.clause("S2.2"))
    assert not decision.results[0].passed


@pytest.mark.parametrize("source", ["github", "jira"])
def test_the_assignee_cannot_approve_even_as_an_approver(source: str) -> None:
    snapshot = _snapshot(source, actor_teams=frozenset({"approvers"}))

    decision = evaluate(POLICY, _label_event(source, Actor("dana")), snapshot, NOW)

    assert ChangeLabels("plan-reviewed", remove=frozenset({APPROVED})) in decision.actions


@pytest.mark.parametrize("source", ["github", "jira"])
def test_the_author_of_the_plan_cannot_approve_it(source: str) -> None:
    plan = Comment(Actor("erin"), PLAN[source], id="7")
    snapshot = _snapshot(source, actor_teams=frozenset({"approvers"}), comments=(plan,))

    decision = evaluate(POLICY, _label_event(source, Actor("erin")), snapshot, NOW)

    assert ChangeLabels("plan-reviewed", remove=frozenset({APPROVED})) in decision.actions
    chinese = POLICY.model_copy(update={"locale": "zh-CN"})
    (comment,) = [
        a
        for a in evaluate(chinese, _label_event(source, Actor("erin")), snapshot, NOW).actions
        if isinstance(a, PostComment)
    ]
    assert comment.body.startswith("**标签「plan/approved」已被移除。**")


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_approver_who_neither_wrote_nor_owns_the_plan_approves(source: str) -> None:
    plan = Comment(Actor("erin"), PLAN[source], id="7")
    snapshot = _snapshot(source, actor_teams=frozenset({"approvers"}), comments=(plan,))

    decision = evaluate(POLICY, _label_event(source, Actor("frank")), snapshot, NOW)

    assert decision.actions == ()
    assert [(r.rule_id, r.passed) for r in decision.results] == [("plan-reviewed", True)]


def test_the_label_added_by_sopguard_itself_stays() -> None:
    event = replace(_label_event("github", Actor("sopguard[bot]", is_bot=True)), by_service=True)

    assert evaluate(POLICY, event, _snapshot("github"), NOW).actions == ()


def test_in_warn_mode_the_wrong_persons_label_stays_and_is_explained() -> None:
    warn = POLICY.model_copy(update={"rule_modes": {"plan-reviewed": "warn"}})

    decision = evaluate(warn, _label_event("github", Actor("mallory")), _snapshot("github"), NOW)

    (comment,) = decision.actions
    assert isinstance(comment, PostComment)
    assert comment.body.startswith('**The label "plan/approved" should not have been added by this person.**')


def test_needs_name_the_teams_to_look_up_and_the_comments_for_the_plans_author() -> None:
    wanted = needs(POLICY, _label_event("github", Actor("frank")), _snapshot("github"))

    assert set(wanted.teams) == {"approvers"} and wanted.comments
    unrelated = needs(POLICY, _label_event("github", Actor("frank"), "bug"), _snapshot("github"))
    assert unrelated.teams == {} and not unrelated.comments


# --- GitHub, end to end --------------------------------------------------------------------------


def _refused(github: FakeGithub) -> bool:
    return APPROVED not in github.labels and any(
        "plan/approved" in c and "was removed" in c for c in github.our_comments()
    )


def test_github_a_passer_by_approval_is_removed(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "planning", "risk/high")

    sopguard.deliver(labelled(github, APPROVED, by="mallory"), "approve-1")

    assert f"GET /repos/{REPO}/collaborators/mallory" in github.calls()
    assert f"DELETE {ISSUE}/labels/plan%2Fapproved" in github.calls()
    assert _refused(github)


def test_github_the_assignee_approving_their_own_work_is_removed(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "planning", "risk/high")

    # Codertocat owns the repository (OWNER, an approver) and is the issue's assignee.
    sopguard.deliver(labelled(github, APPROVED, by="Codertocat"), "approve-2")

    assert _refused(github)
    assert not any(call.startswith(f"GET /repos/{REPO}/collaborators/") for call in github.calls())


def test_github_a_collaborators_approval_stays_and_is_looked_up_once(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "planning", "risk/high")
    github.collaborators.add("rita")

    sopguard.deliver(labelled(github, APPROVED, by="rita"), "approve-3")
    github.labels.remove(APPROVED)
    sopguard.deliver(labelled(github, APPROVED, by="rita"), "approve-4")

    assert APPROVED in github.labels and not list(github.our_comments())
    assert github.calls().count(f"GET /repos/{REPO}/collaborators/rita") == 1  # cached


def test_github_the_plans_author_cannot_approve_it(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "planning", "risk/high")
    github.collaborators.add("rita")
    github.comments.append(
        {
            "id": 1,
            "body": PLAN["github"],
            "user": {"login": "rita", "id": 5, "type": "User"},
            "created_at": COMMENTED_AT,
        }
    )
    approval = labelled(github, APPROVED, by="rita")
    approval["sender"]["id"] = 5

    sopguard.deliver(approval, "approve-5")

    assert _refused(github)


def test_github_team_membership_is_looked_up_through_the_org_team_and_cached(github: FakeGithub) -> None:
    github.team_members["acme/service-leads"] = {"lead-2"}
    connector = GithubConnector(auth=Auth.Token("t"), sleep=lambda _: None)
    payload = labelled(github, APPROVED, by="lead-2")
    event, snapshot = to_event("issues", "d-1", payload)
    teams = {
        "approvers": Team.model_validate({"github": ["lead-1", "@acme/service-leads"]}),
        "outsiders": Team.model_validate({"github": ["@acme/sales"]}),
    }
    delivery = Delivery("github", "d-1", "issues", payload)

    first = connector.complete(delivery, event, snapshot, Needs(teams=teams))
    again = connector.complete(delivery, event, snapshot, Needs(teams=teams))

    assert first.actor_teams == again.actor_teams == frozenset({"approvers"})
    lookups = [c for c in github.calls() if "/teams/" in c]
    assert lookups == [
        "GET /orgs/acme/teams/service-leads/memberships/lead-2",
        "GET /orgs/acme/teams/sales/memberships/lead-2",
    ]


# --- first response (S1.4): only the team's public reply stops it ----------------------------------


def _github_comment(association: str, login: str) -> tuple[Event, IssueSnapshot]:
    payload = copy.deepcopy(fixture_json("github", "issue_comment__created.json"))
    payload["comment"]["author_association"] = association
    for person in (payload["comment"]["user"], payload["sender"]):
        person.update(login=login, id=77)
    return to_event("issue_comment", f"c-{login}", payload)


@pytest.mark.parametrize(
    ("association", "responds"), [("NONE", False), ("CONTRIBUTOR", False), ("MEMBER", True)]
)
def test_github_a_comment_is_the_first_response_only_from_the_team(
    no_network: responses.RequestsMock, association: str, responds: bool
) -> None:
    event, snapshot = _github_comment(association, "passer-by")
    wanted = needs(POLICY, event, snapshot)
    assert set(wanted.teams) == {"team-members"}
    connector = GithubConnector(auth=Auth.Token("t"), sleep=lambda _: None)
    delivery = Delivery("github", event.delivery_id, "issue_comment", {})
    completed = connector.complete(delivery, event, snapshot, replace(wanted, comments=False))
    facts = IssueFacts(True, "P2", "Codertocat", (), frozenset())

    entries = timeline_entries(POLICY, event, completed, Decision(), facts, "P2", NOW)

    (commented,) = [e for e in entries if isinstance(e, Commented)]
    assert commented.is_response is responds
    looked_up = [c.request.url for c in no_network.calls if "collaborators" in str(c.request.url)]
    assert looked_up == []  # the association came with the delivery


# --- Jira, end to end ----------------------------------------------------------------------------


def _jira_labelled(deployment: Deployment, author: dict[str, str], label: str = APPROVED) -> dict[str, Any]:
    payload = copy.deepcopy(fixture_json("jira", "mattermost__webhook-issue-updated-labels.json"))
    fields = payload["issue"]["fields"]
    fields["status"] = {**fields["status"], "name": "Planning"}
    fields["labels"] = ["risk/high", label]
    payload["changelog"]["items"] = [
        {"field": "labels", "fieldtype": "jira", "fromString": "risk/high", "toString": f"risk/high {label}"}
    ]
    payload["user"] = author
    return payload


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: d.name)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    chosen: Deployment = request.param
    return chosen


def _person(deployment: Deployment, ident: str) -> dict[str, str]:
    if deployment is CLOUD:
        return {"accountId": ident, "displayName": ident.title()}
    return {"name": ident, "key": ident, "displayName": ident.title()}


def _jira_start(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment, payload: dict[str, Any]
) -> tuple[FakeJira, JiraService]:
    fake, sopguard = fake_for(no_network, deployment, payload), jira_service(tmp_path, deployment)
    follow(sopguard, payload)  # the issue is followed already: the label's addition is judged
    return fake, sopguard


def test_jira_an_approval_by_someone_without_the_role_is_removed(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    payload = _jira_labelled(deployment, _person(deployment, "mallory"))
    fake, sopguard = _jira_start(no_network, tmp_path, deployment, payload)

    sopguard.deliver(payload, "approve-jira-1")

    assert {"update": {"labels": [{"remove": APPROVED}]}} in fake.sent("PUT", issue_path(fake))
    assert APPROVED not in fake.labels
    assert f"GET /rest/api/2/project/{fake.project}/role" in fake.calls()
    fake.check_against_openapi()


def test_jira_an_approval_by_a_role_holder_through_a_group_stays(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    payload = _jira_labelled(deployment, _person(deployment, "rita"))
    fake, sopguard = _jira_start(no_network, tmp_path, deployment, payload)
    fake.in_role("Administrators", groups=["service-leads"])
    fake.groups["rita"] = ["Service-Leads"]  # Jira compares group names without case

    sopguard.deliver(payload, "approve-jira-2")

    assert fake.sent("PUT", issue_path(fake)) == [] and APPROVED in fake.labels
    assert fake.our_comments() == []
    fake.check_against_openapi()


@pytest.mark.parametrize(("role", "responds"), [(None, False), ("Service Desk Team", True)])
def test_jira_a_comment_is_the_first_response_only_from_a_role_holder(
    tmp_path: Path,
    no_network: responses.RequestsMock,
    deployment: Deployment,
    role: str | None,
    responds: bool,
) -> None:
    payload = copy.deepcopy(fixture_json("jira", "mattermost__webhook-cloud-comment-created.json"))
    payload["comment"]["author"] = _person(deployment, "visitor")
    payload.pop("user", None)
    fake = fake_for(
        no_network,
        deployment,
        {"issue": {"key": payload["issue"]["key"], "fields": {"status": {"name": "Triage"}}}},
    )
    if role:
        fake.in_role(role, users=["visitor"])
    sopguard = jira_service(tmp_path, deployment)
    event, snapshot = Delivery("jira", "c-1", "comment_created", payload).normalize(())
    wanted = needs(POLICY, event, snapshot)

    completed = sopguard.connector.complete(
        Delivery("jira", "c-1", "comment_created", payload), event, snapshot, wanted
    )

    facts = IssueFacts(True, "P2", "someone-else", (), frozenset(), reporter_id="someone-else")
    entries = timeline_entries(POLICY, event, completed, Decision(), facts, "P2", NOW)
    (commented,) = [e for e in entries if isinstance(e, Commented)]
    assert commented.is_response is responds
    fake.check_against_openapi()


def test_jira_a_label_the_agent_may_not_add_does_not_carry_the_move_made_with_it(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    """A transition screen with the Labels field: one update adds customer-confirmed and moves on."""
    payload = _jira_labelled(deployment, _person(deployment, "agent-amy"), "customer-confirmed")
    fields = payload["issue"]["fields"]
    fields["labels"] = ["customer-confirmed"]
    fields["description"] = PLAN["jira"]
    fields["assignee"] = _person(deployment, "agent-amy")
    payload["changelog"]["items"] = [
        {"field": "labels", "fieldtype": "jira", "fromString": "", "toString": "customer-confirmed"}
    ]
    payload = with_status_change(payload, "Customer Confirmation", "In Progress")
    fake, sopguard = _jira_start(no_network, tmp_path, deployment, payload)

    sopguard.deliver(payload, "confirm-for-the-customer")

    assert "customer-confirmed" not in fake.labels
    assert fake.status == "Customer Confirmation"  # the move is undone: the customer did not confirm
    verdicts = {
        e.rule_id: e.passed
        for e in sopguard.intake.store.audit.entries()
        if e.delivery_id == "confirm-for-the-customer"
    }
    assert verdicts["customer-confirmation-recorded"] is False


def test_github_labels_added_at_once_do_not_carry_the_move_with_the_refused_one(
    sopguard: Service, github: FakeGithub
) -> None:
    """GitHub sends one `labeled` delivery per label picked, each showing them all: the second
    still shows the label sopguard removed after the first."""
    put_in_state(sopguard, github, "customer-confirmation", "priority/P4")
    body = form_body() + "\n\n" + PLAN["github"]
    github.labels += ["customer-confirmed", "status/in-progress"]
    shown = list(github.labels)  # as both deliveries show the issue
    for label in ("customer-confirmed", "status/in-progress"):
        picked = issue_payload("labeled", labels=shown, body=body, label={"name": label})
        picked["sender"] = {**picked["sender"], "login": "agent-amy", "id": 8}
        sopguard.deliver(picked, f"picked-{label}")

    assert "customer-confirmed" not in github.labels
    assert "status/customer-confirmation" in github.labels and "status/in-progress" not in github.labels
    assert any(c.startswith("**This change of stage was undone.**") for c in github.our_comments())


def test_github_whoever_wrote_the_plan_into_the_issue_cannot_approve_it(
    sopguard: Service, github: FakeGithub
) -> None:
    """The body is the reporter's, but the plan in it is whoever edited it in."""
    put_in_state(sopguard, github, "planning", "risk/high", "priority/P4")
    github.collaborators.update({"rita", "lee"})
    edit = issue_payload("edited", labels=list(github.labels), body=form_body() + "\n\n" + PLAN["github"])
    edit["changes"] = {"body": {"from": form_body()}}
    edit["sender"] = {**edit["sender"], "login": "rita", "id": 5}
    sopguard.deliver(edit, "plan-written")

    own = labelled(github, APPROVED, by="rita", issue={"body": edit["issue"]["body"]})
    own["sender"]["id"] = 5
    sopguard.deliver(own, "approve-own")

    assert _refused(github)
    sopguard.deliver(labelled(github, APPROVED, by="lee", issue={"body": edit["issue"]["body"]}), "approve")
    assert APPROVED in github.labels


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_restricted_label_whose_adder_is_not_known_is_removed_saying_so(source: str) -> None:
    """A reconcile tells a missed label change without its author (the tracker's issue has none)."""
    decision = evaluate(POLICY, _label_event(source, Actor("")), _snapshot(source), NOW)

    (comment,) = [a for a in decision.actions if isinstance(a, PostComment)]
    assert comment.body.startswith(
        '**The label "plan/approved" was removed.**\nWho added it is not known: only approvers may,'
    )
    assert "@" not in comment.body


# --- the engine: every plan reviewed unless an approver judged it low-risk (S2.2) ----------------

LOW_RISK = "risk/low"


def _ready_to_start(source: Source, *labels: str, approved: bool = False) -> IssueSnapshot:
    """An issue in planning that meets every guard of the start of the work but the review
    (labelled neither risk/high nor risk/low unless told)."""
    start = POLICY.workflow.transition("planning", "in-progress")
    assert start is not None
    ready = snapshot_meeting(POLICY, start, source)
    kept = (ready.labels - {APPROVED, "risk/high"}) | ({APPROVED} if approved else set())
    return replace(ready, labels=frozenset(kept | set(labels)))


def _verdicts(decision: Decision) -> dict[str, tuple[bool | None, tuple[str, ...]]]:
    return {r.rule_id: (r.passed, r.reasons) for r in decision.results}


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_plan_nobody_labelled_is_reviewed_before_the_work_starts(source: Source) -> None:
    decision, _ = move(POLICY, source, "planning", "in-progress", _ready_to_start(source))

    verdicts = _verdicts(decision)
    assert verdicts["plan-reviewed"][0] is False and verdicts["start-work"][0] is False
    assert "high-risk-plan-reviewed" not in verdicts  # it applies to risk/high plans only
    assert any(
        isinstance(a, PostComment) and "(rule `plan-reviewed`, SOP S2.2" in a.body for a in decision.actions
    )


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_approvers_low_risk_judgement_waives_the_review(source: Source) -> None:
    decision, _ = move(POLICY, source, "planning", "in-progress", _ready_to_start(source, LOW_RISK))

    verdicts = _verdicts(decision)
    assert verdicts["plan-reviewed"] == (True, ("waived: the issue carries risk/low",))
    assert verdicts["start-work"][0] is True


@pytest.mark.parametrize("source", ["github", "jira"])
def test_low_risk_waives_no_review_of_a_high_risk_plan(source: Source) -> None:
    both = _ready_to_start(source, LOW_RISK, "risk/high")

    refused, _ = move(POLICY, source, "planning", "in-progress", both)
    reviewed, _ = move(
        POLICY, source, "planning", "in-progress", replace(both, labels=both.labels | {APPROVED})
    )

    assert _verdicts(refused)["high-risk-plan-reviewed"][0] is False
    assert _verdicts(refused)["start-work"][0] is False
    assert _verdicts(reviewed)["start-work"][0] is True


def test_a_low_risk_label_sopguard_removed_waives_nothing() -> None:
    """A delivery older than sopguard's removal of the assignee's risk/low still shows it."""
    seen = _ready_to_start("github", LOW_RISK)
    removed = replace(seen, known_labels=seen.labels - {LOW_RISK})

    decision, _ = move(POLICY, "github", "planning", "in-progress", removed)

    assert _verdicts(decision)["plan-reviewed"][0] is False


@pytest.mark.parametrize(("who", "teams"), [("dana", frozenset({"approvers"})), ("mallory", frozenset())])
def test_the_assignees_or_a_passer_bys_low_risk_is_removed_and_explained(
    who: str, teams: frozenset[str]
) -> None:
    snapshot = _snapshot("github", labels=frozenset({LOW_RISK}), actor_teams=teams)

    decision = evaluate(POLICY, _label_event("github", Actor(who), LOW_RISK), snapshot, NOW)

    remove, comment = decision.actions
    assert remove == ChangeLabels("low-risk-judged-by-approvers", remove=frozenset({LOW_RISK}))
    assert isinstance(comment, PostComment)
    assert comment.body.startswith(
        f'**The label "risk/low" was removed.**\n@{who} may not add it: only approvers may, and never '
        "the assignee, the plan's author. Only an approver judges a plan low-risk, so that it needs no "
        "internal review (/low-risk)."
    )
    assert comment.body.rstrip().endswith(
        "Rule `low-risk-judged-by-approvers`, SOP S2.2: " + POLICY.clause("S2.2")
    )


def test_an_approvers_low_risk_stays_and_the_approvers_are_looked_up_for_it() -> None:
    snapshot = _snapshot("github", labels=frozenset({LOW_RISK}), actor_teams=frozenset({"approvers"}))
    event = _label_event("github", Actor("frank"), LOW_RISK)

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert decision.actions == ()
    assert [(r.rule_id, r.passed) for r in decision.results] == [("low-risk-judged-by-approvers", True)]
    assert set(needs(POLICY, event, snapshot).teams) == {"approvers"}


def test_jira_the_assignees_low_risk_added_with_the_move_carries_neither() -> None:
    """A Jira transition screen with the Labels field: one update adds risk/low and starts the work."""
    ready = _ready_to_start("jira", LOW_RISK)
    statuses = POLICY.trackers.jira.statuses
    event = Event(
        source="jira",
        kinds=frozenset({EventKind.STATUS_CHANGED, EventKind.LABELS_CHANGED}),
        delivery_id="d-1",
        actor=Actor("dana"),
        issue=JIRA_REF,
        status_before=statuses["planning"][0],
        status_after=statuses["in-progress"][0],
        labels_before=ready.labels - {LOW_RISK},
        labels_after=ready.labels,
    )
    snapshot = replace(ready, status=statuses["in-progress"][0], last_state="planning", assignees=("dana",))

    decision = evaluate(POLICY, event, snapshot, NOW)

    verdicts = _verdicts(decision)
    assert verdicts["low-risk-judged-by-approvers"][0] is False
    assert verdicts["plan-reviewed"][0] is False and verdicts["start-work"][0] is False
    assert ChangeLabels("low-risk-judged-by-approvers", remove=frozenset({LOW_RISK})) in decision.actions


@pytest.mark.parametrize("source", ["github", "jira"])
def test_back_from_waiting_to_the_work_the_review_is_not_demanded_again(source: Source) -> None:
    """An issue sopguard followed since before every plan needed a review started without one."""
    ready = _ready_to_start(source)
    earlier = NOW - dt.timedelta(days=2)
    timeline = (
        Created(at=earlier, state="planning"),
        StateChanged(at=earlier + dt.timedelta(hours=1), state="in-progress"),
        StateChanged(at=earlier + dt.timedelta(days=1), state="waiting-for-customer"),
    )

    decision, _ = move(
        POLICY, source, "waiting-for-customer", "in-progress", replace(ready, timeline=timeline)
    )

    verdicts = _verdicts(decision)
    assert verdicts["plan-reviewed"] == (
        True,
        ("back from waiting to the stage it was in: not demanded again",),
    )
    assert verdicts["customer-replied-during-work"][0] is True


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_issue_adopted_past_planning_is_not_held_to_the_review_and_one_adopted_in_it_is(
    source: Source,
) -> None:
    confirmed = replace(_ready_to_start(source, "customer-confirmed"), adopted=True)

    past, _ = move(POLICY, source, "customer-confirmation", "in-progress", confirmed)
    within, _ = move(POLICY, source, "planning", "in-progress", confirmed)

    assert _verdicts(past)["plan-reviewed"] == (
        True,
        ("adopted after the stage it is first checked on: not demanded",),
    )
    assert _verdicts(past)["customer-confirmed"][0] is True
    assert _verdicts(within)["plan-reviewed"][0] is False


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_issue_adopted_in_planning_is_held_to_the_review_on_the_way_through_customer_confirmation(
    source: Source,
) -> None:
    """Where it was adopted is on record: the plan was made under sopguard's eyes, whichever way
    the work starts. One adopted in customer confirmation had its plan before."""
    earlier = NOW - dt.timedelta(days=2)
    confirmed = replace(_ready_to_start(source, "customer-confirmed"), adopted=True)

    def adopted_in(state: str) -> IssueSnapshot:
        beginning = (Created(at=earlier, state=state), AdoptedIn(at=earlier, state=state))
        return replace(confirmed, timeline=beginning)

    in_planning, _ = move(POLICY, source, "customer-confirmation", "in-progress", adopted_in("planning"))
    in_confirmation, _ = move(
        POLICY, source, "customer-confirmation", "in-progress", adopted_in("customer-confirmation")
    )

    assert _verdicts(in_planning)["plan-reviewed"][0] is False
    assert _verdicts(in_planning)["customer-confirmed"][0] is False
    assert _verdicts(in_confirmation)["plan-reviewed"] == (
        True,
        ("adopted after the stage it is first checked on: not demanded",),
    )


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_issue_adopted_while_waiting_counts_from_where_it_paused_and_is_held_once_back_before_planning(
    source: Source,
) -> None:
    earlier = NOW - dt.timedelta(days=2)
    ready = replace(_ready_to_start(source, "customer-confirmed"), adopted=True)

    def adopted_waiting(paused_in: str, *later: str) -> IssueSnapshot:
        hour = dt.timedelta(hours=1)
        timeline: tuple[TimelineEvent, ...] = (
            Created(at=earlier, state=paused_in),
            StateChanged(at=earlier + hour, state="waiting-for-customer"),
            AdoptedIn(at=earlier + 2 * hour, state="waiting-for-customer"),
            *(StateChanged(at=earlier + (3 + n) * hour, state=state) for n, state in enumerate(later)),
        )
        return replace(ready, timeline=timeline)

    from_triage = adopted_waiting("triage", "triage", "diagnosis", "planning")
    from_confirmation = adopted_waiting("customer-confirmation", "customer-confirmation")

    planned_in_sight, _ = move(POLICY, source, "planning", "in-progress", from_triage)
    planned_before, _ = move(POLICY, source, "customer-confirmation", "in-progress", from_confirmation)

    assert _verdicts(planned_in_sight)["plan-reviewed"][0] is False
    assert _verdicts(planned_before)["plan-reviewed"] == (
        True,
        ("adopted after the stage it is first checked on: not demanded",),
    )


def test_adopting_an_issue_records_the_stage_it_was_adopted_in() -> None:
    event = _label_event("github", Actor("amy"), "status/planning")
    snapshot = IssueSnapshot(ref=GITHUB_REF, labels=frozenset({"status/planning"}), first_seen=True)
    decision = evaluate(POLICY, event, snapshot, NOW)
    facts = IssueFacts(is_open=True, priority=None, reporter="", assignees=(), labels=snapshot.labels)

    entries = timeline_entries(POLICY, event, snapshot, decision, facts, None, NOW)

    assert [e for e in entries if isinstance(e, AdoptedIn)] == [AdoptedIn(at=NOW, state="planning")]


# --- the policy language: restricted labels ---------------------------------------------------------

RESTRICTED = "restricted_labels:\n  - id: low-risk-judged-by-approvers\n"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            (
                "    by: approvers\n    not_by: [assignee, author-of-plan] # the people",
                "    by: aprovers\n    not_by: [assignee, author-of-plan] # the people",
            ),
            "unknown team 'aprovers'",
        ),
        (
            ("    label: risk/low # waives", "    label: plan/approved # waives"),
            "label 'plan/approved' is restricted already, by guard 'plan-reviewed'",
        ),
        (
            ("    by: approvers\n    not_by: [assignee, author-of-plan] # the people", "    # the people"),
            "give `by` or `not_by`",
        ),
    ],
    ids=["unknown team", "restricted by a guard too", "nobody named"],
)
def test_a_restricted_label_is_checked_with_its_place(change: tuple[str, str], problem: str) -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    assert RESTRICTED in text and change[0] in text

    with pytest.raises(PolicyError) as refused:
        parse_policy(text.replace(*change))

    assert problem in str(refused.value)
    assert "restricted_labels" in str(refused.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("label: risk/low # waives", "label: risk/lowest # waives"), "nothing restricts who may add it"),
        (("unless_label: risk/low", "unless_label: plan/approved"), "waived by the very label it asks for"),
    ],
    ids=["waiver restricted by nobody", "waived by its own label"],
)
def test_a_waiver_anyone_could_give_is_refused_with_its_place(change: tuple[str, str], problem: str) -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    assert change[0] in text

    with pytest.raises(PolicyError) as refused:
        parse_policy(text.replace(*change, 1))

    assert problem in str(refused.value) and "guard_sets.plan-ready" in str(refused.value)


def test_a_label_restricted_twice_is_refused() -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    twice = text.replace(
        RESTRICTED,
        RESTRICTED.replace(
            "  - id: low-risk-judged-by-approvers\n",
            "  - {id: low-risk-again, sop: S2.2, label: risk/low, by: approvers, requirement: {en: x}}\n  - id: low-risk-judged-by-approvers\n",
        ),
    )

    with pytest.raises(PolicyError) as refused:
        parse_policy(twice)

    assert "label 'risk/low' is restricted more than once" in str(refused.value)


def _new_plan_by_sam(delivery_id: str, comment_id: str) -> Event:
    """Sam's comment on GitHub with a new plan."""
    return Event(
        source="github",
        kinds=frozenset({EventKind.COMMENTED}),
        delivery_id=delivery_id,
        actor=Actor("sam"),
        issue=GITHUB_REF,
        name="issue_comment.created",
        comment=Comment(Actor("sam"), PLAN["github"], id=comment_id),
    )


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_new_plan_withdraws_both_the_approval_and_the_low_risk_judgement(locale: str) -> None:
    policy = POLICY.model_copy(update={"locale": locale})
    event = _new_plan_by_sam("d-2", "9")
    snapshot = _snapshot("github", labels=frozenset({APPROVED, LOW_RISK}), last_state="planning")

    decision = evaluate(policy, event, snapshot, NOW)

    change, comment = decision.actions
    assert change == ChangeLabels(
        "changed-plan-needs-approval", add=frozenset({"plan/changed"}), remove=frozenset({APPROVED, LOW_RISK})
    )
    assert isinstance(comment, PostComment)
    assert comment.body.startswith(
        {
            "en": '**The approval of the plan was withdrawn.** @sam changed the approved plan, so "plan/approved" '
            'and "risk/low" were removed and "plan/changed" added. The changed plan needs approval again',
            "zh-CN": "**方案的批准已撤回。** @sam 修改了已批准的方案，因此移除了「plan/approved」、「risk/low」标签并添加了"
            "「plan/changed」标签。变更后的方案须重新批准",
        }[locale]
    )


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_new_plan_judged_low_risk_only_says_that_judgement_was_withdrawn_and_how_to_give_it(
    locale: str,
) -> None:
    """No approval existed: the comment said "The approval of the plan was withdrawn" and offered
    only /approve-plan."""
    policy = POLICY.model_copy(update={"locale": locale})
    event = _new_plan_by_sam("d-3", "10")
    snapshot = _snapshot("github", labels=frozenset({LOW_RISK}), last_state="planning")

    _, comment = evaluate(policy, event, snapshot, NOW).actions

    assert isinstance(comment, PostComment)
    assert comment.body.startswith(
        {
            "en": "**The judgement of the plan as low-risk was withdrawn.** @sam changed the plan judged "
            'low-risk, so "risk/low" was removed and "plan/changed" added. The changed plan needs an '
            "approver's review (/approve-plan), or their judgement that it is low-risk (/low-risk).",
            "zh-CN": "**方案的低风险认定已撤回。** @sam 修改了已认定为低风险的方案，因此移除了「risk/low」标签并添加了"
            "「plan/changed」标签。变更后的方案须经评审人评审（/approve-plan），或由其认定为低风险（/low-risk）。",
        }[locale]
    )


@pytest.mark.parametrize(
    "picked", [["risk/low", "status/in-progress"], ["risk/low", "area/db", "status/in-progress"]]
)
def test_github_labels_picked_together_give_no_waiver_the_assignee_may_not_give(
    sopguard: Service, github: FakeGithub, picked: list[str]
) -> None:
    """GitHub sends labels picked at once as one delivery each, each showing them all: the
    `area/db` delivery still showed the `risk/low` sopguard had removed, the ledger took it for
    known, and the move's delivery then counted it: the unreviewed work started."""
    amy = {"login": "agent-amy", "id": 8, "type": "User"}
    put_in_state(sopguard, github, "planning", "priority/P4")
    add_checklist(github, "preparation")
    github.labels += picked
    shown = list(github.labels)
    for label in picked:
        payload = issue_payload(
            "labeled",
            labels=shown,
            body=form_body() + "\n\n### Plan\n\nRestart the cluster node by node.",
            label={"name": label},
            issue={"assignee": amy, "assignees": [amy]},
        )
        payload["sender"] = {**payload["sender"], "login": "agent-amy", "id": 8}
        sopguard.deliver(payload, f"picked-{label}")

    assert "risk/low" not in github.labels and "status/in-progress" not in github.labels
    assert sopguard.intake.store.ledger.memory(HELLO_WORLD).last_state == "planning"


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_restricted_label_an_issue_is_created_with_is_judged_like_one_added_later(source: Source) -> None:
    """Jira's `issue_created` has no changelog: a `risk/low` put on the create screen (or kept by a
    clone) was never judged, then known, and waived the review of the plan."""
    start = POLICY.workflow.transition("planning", "in-progress")
    assert start is not None
    ready = snapshot_meeting(POLICY, start, source)
    labels = frozenset((ready.labels - {"plan/approved"}) | {"risk/low"})
    created = Event(
        source=source,
        kinds=frozenset({EventKind.OPENED}),
        delivery_id="created-1",
        actor=Actor("dana"),
        issue=GITHUB_REF if source == "github" else JIRA_REF,
        labels_before=labels,
        labels_after=labels,
    )

    decision = evaluate(POLICY, created, replace(ready, labels=labels, assignees=("dana",)), NOW)

    (refused,) = [r for r in decision.results if r.rule_id == "low-risk-judged-by-approvers"]
    assert not refused.passed and refused.reasons == ("dana may not add risk/low",)
    assert any(isinstance(a, ChangeLabels) and "risk/low" in a.remove for a in decision.actions)
