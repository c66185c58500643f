"""End to end on Jira Cloud and Data Center: signed delivery -> queue -> engine -> Jira connector -> HTTP.

Each test replays a real payload (changed in memory where the scenario needs it) into the Flask app,
runs the queue, and asserts the exact requests, the issue as the fake Jira keeps it afterwards, the
comment as Jira receives it, and that every request is allowed by Atlassian's OpenAPI description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses
from sqlalchemy import update

from policies.models import IssueRef
from runtime.store.schema import deliveries
from tests.conftest import drain, fixture_json
from tests.jira_support import (
    CLOUD,
    DATA_CENTER,
    DEPLOYMENTS,
    FIELDS,
    MYSELF,
    SERVER_INFO,
    Deployment,
    FakeJira,
    Scenario,
    adf_text,
    as_edit,
    by_the_service,
    close_blocked,
    intake_missing,
    issue_path,
    no_way_back,
    post_comment,
    priority_set,
    project_type_read,
    service,
    start,
    subtasks_created,
    team_reads,
    transition_undone,
    with_intake,
    with_status_change,
)


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: d.name)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    chosen: Deployment = request.param
    return chosen


def _comment_calls(fake: FakeJira, *, first: bool = True, internal: bool = True) -> list[str]:
    """(The deployment type and, before an internal note on Data Center, the project's type, once),
    then the POST: which comments exist is in the journal."""
    once = [SERVER_INFO, *(project_type_read(fake) if internal else [])] if first else []
    return [*once, post_comment(fake)]


def _blocks(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [(block["type"], adf_text(block).strip()) for block in document["content"]]


def _only_comment(fake: FakeJira) -> Any:
    (comment,) = fake.our_comments()
    return comment


# --- transitions: undone, or impossible to undo -------------------------------------------------------


def test_a_skipped_stage_is_moved_back_and_explained_in_one_comment(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    fake, sopguard = start(no_network, tmp_path / "var", transition_undone(deployment), deployment)
    previous = "To Do" if deployment is CLOUD else "In Progress"

    assert sopguard.deliver(transition_undone(deployment).payload, "undo-1") == "accepted"

    issue = issue_path(fake)
    assert fake.calls() == [
        MYSELF,
        FIELDS,
        f"GET {issue}/transitions",
        f"POST {issue}/transitions",
        *_comment_calls(fake),
    ]
    # The transition whose target is the previous status; the library sends its id as a number.
    assert fake.sent("POST", f"{issue}/transitions") == [
        {"transition": {"id": int(fake.transition_id(previous))}, "fields": {}}
    ]
    assert fake.status == previous
    assert (
        sopguard.outcomes("undo-1")["follow-the-lifecycle"]
        == f"applied (transition 'Move to {previous}' to {previous}); applied"
    )
    marker = (
        "transition-rejected:new:in-progress:undo-1"
        if deployment is CLOUD
        else "transition-rejected:in-progress:closed:undo-1"
    )
    (comment,) = fake.comments  # its marker and text digest ride on the comment; no issue property
    assert comment["properties"][0]["value"]["marker"] == marker
    assert fake.properties == {}
    fake.check_against_openapi()


def test_the_undo_comment_reads_well_in_adf_on_cloud(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    fake, sopguard = start(no_network, tmp_path / "var", transition_undone(CLOUD), CLOUD)

    sopguard.deliver(transition_undone(CLOUD).payload, "undo-adf")

    document = _only_comment(fake)
    assert document["type"] == "doc" and document["version"] == 1
    assert _blocks(document) == [
        ("paragraph", "This change of stage was undone.\n@admin moved this issue from New to In progress."),
        (
            "paragraph",
            "In progress can only be entered from Planning, Customer confirmation, Customer acceptance, "
            "Waiting for customer, Closed (rule follow-the-lifecycle, SOP P2: One set of steps for every "
            "service request.)",
        ),
        ("paragraph", "Stages skipped:"),
        (
            "bulletList",
            "Triage (SOP S1.3: Set the priority from severity, urgency and customer tier.)\n"
            "Diagnosis (SOP S2.1: Diagnose before planning; escalate complex problems to experts.)\n"
            "Planning (SOP S2.2: Write a service plan (steps, time, risks, resources); high-risk plans pass "
            "an internal review.)",
        ),
        ("paragraph", "From New the next stage can be: Triage."),
    ]
    headline, _, mention, *_ = document["content"][0]["content"]
    assert headline["marks"] == [{"type": "strong"}]
    assert mention == {"type": "mention", "attrs": {"id": "5c5f880629be9642ba529340", "text": "@admin"}}
    rule = document["content"][1]["content"][2]
    assert rule == {"type": "text", "text": "follow-the-lifecycle", "marks": [{"type": "code"}]}


def test_the_undo_comment_reads_well_in_wiki_markup_on_data_center(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    fake, sopguard = start(no_network, tmp_path / "var", transition_undone(DATA_CENTER), DATA_CENTER)

    sopguard.deliver(transition_undone(DATA_CENTER).payload, "undo-wiki")

    assert _only_comment(fake) == (
        "*This change of stage was undone.*\n"
        "[~admin] moved this issue from *In progress* to *Closed*.\n"
        "\n"
        "*Closed* can only be entered from Customer acceptance (rule {{follow-the-lifecycle}}, SOP P2: One "
        "set of steps for every service request.)\n"
        "\n"
        "Stages skipped:\n"
        "\n"
        "* Verification (SOP S4.1: Self-check and verify internally before asking the customer to accept.)\n"
        "* Customer acceptance (SOP S4.2: The customer accepts the result.)\n"
        "\n"
        "From *In progress* the next stage can be: Verification, Waiting for customer."
    )


def test_with_no_transition_back_the_issue_is_labelled_commented_once_and_nothing_loops(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = no_way_back(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    stays, previous = ("In Progress", "To Do") if deployment is CLOUD else ("Resolved", "In Progress")

    sopguard.deliver(scenario.payload, "stuck-1")

    issue = issue_path(fake)
    assert fake.calls() == [
        MYSELF,
        FIELDS,
        f"GET {issue}/transitions",
        f"GET {issue}",  # no way back: where the issue is, and the ways out of there, read together
        f"PUT {issue}",
        *_comment_calls(fake),
    ]
    assert fake.query("GET", issue) == [{"fields": ["status"], "expand": ["transitions"]}]
    assert fake.sent("PUT", issue) == [{"update": {"labels": [{"add": "sop-violation"}]}}]
    assert fake.status == stays and "sop-violation" in fake.labels
    outcome = sopguard.outcomes("stuck-1")["follow-the-lifecycle"]
    assert outcome.startswith(
        f"failed: the workflow has no transition from {stays} to {previous}; commented and labelled sop-violation"
    )
    comment = _only_comment(fake)
    text = adf_text(comment) if deployment is CLOUD else comment
    assert "This change of stage does not follow the service procedure." in text
    assert "was undone" not in text
    assert f"the workflow has no transition from {stays}" in text.replace("*", "")
    fake.check_against_openapi()

    # Jira reports sopguard's own label change: it is recognised and nothing is done.
    before = len(fake.calls())
    sopguard.deliver(by_the_service(scenario.payload, deployment), "stuck-echo")
    assert fake.calls()[before:] == []
    (entry,) = [e for e in sopguard.intake.store.audit.entries() if e.delivery_id == "stuck-echo"]
    assert entry.reasons == ["caused by this service itself; nothing to do"]


# --- priority (S1.3) -------------------------------------------------------------------------------------


def test_priority_and_its_label_are_set_in_one_update_without_a_reload(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    fake, sopguard = start(no_network, tmp_path / "var", priority_set(deployment), deployment)

    sopguard.deliver(priority_set(deployment).payload, "prio-1")

    issue = issue_path(fake)
    assert fake.calls() == [MYSELF, FIELDS, f"PUT {issue}", *_comment_calls(fake, internal=False)]
    assert fake.sent("PUT", issue) == [
        {"fields": {"priority": {"name": "Highest"}}, "update": {"labels": [{"add": "priority-P1"}]}}
    ]
    assert fake.priority == "Highest" and "priority-P1" in fake.labels
    comment = _only_comment(fake)  # the receipt (S1.4), for the customer, states the priority and why
    expected = (
        'Received. This request is handled as P1, from impact "Business outage", urgency "High" and '
        'customer tier "Standard". Next step: Triage.'
    )
    if deployment is CLOUD:
        assert _blocks(comment)[0] == ("paragraph", expected)
    else:
        assert comment.startswith("*Received.* This request is handled as *P1*, from impact")
    assert sopguard.outcomes("prio-1")["priority-from-impact-and-urgency"] == "applied"
    fake.check_against_openapi()


def _priority_changed_by_a_person(deployment: Deployment) -> dict[str, Any]:
    if deployment is CLOUD:
        return fixture_json("jira", "mattermost__webhook-issue-updated-raised-priority.json")
    payload = fixture_json("jira", "mattermost__webhook-server-issue-updated-in-progress.json")
    payload["issue"]["fields"]["priority"] = {"name": "High", "id": "2"}
    payload["changelog"]["items"] = [{"field": "priority", "fromString": "Medium", "toString": "High"}]
    return payload


def test_a_priority_chosen_by_a_person_is_kept_recorded_and_acknowledged(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = with_intake(_priority_changed_by_a_person(deployment))
    fake, sopguard = start(no_network, tmp_path / "var", Scenario("manual", payload), deployment)

    sopguard.deliver(payload, "manual-1")

    # No edit (the choice is kept); the acknowledgement, then the receipt restated at the new priority.
    assert fake.calls() == [
        MYSELF,
        FIELDS,
        *_comment_calls(fake),
        post_comment(fake),
    ]
    assert fake.priority == "High"
    key = payload["issue"]["key"]
    assert sopguard.intake.store.ledger.memory(IssueRef("jira", "TES", key)).manual_priority == "P2"
    acknowledged, receipt = (
        adf_text(c) if deployment is CLOUD else c.replace("*", "") for c in fake.our_comments()
    )
    assert "Priority P2 was chosen by " in acknowledged and "impact and urgency give P1" in acknowledged
    assert "Received. This request is handled as P2." in receipt


# --- intake (S1.2) ------------------------------------------------------------------------------------------


def test_missing_intake_at_create_is_asked_once_and_a_completed_intake_is_acknowledged(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    created = intake_missing(deployment).payload
    fake, sopguard = start(no_network, tmp_path / "var", intake_missing(deployment), deployment)
    issue = issue_path(fake)

    sopguard.deliver(created, "create-1")

    assert fake.calls() == [
        MYSELF,
        FIELDS,
        f"PUT {issue}",
        *_comment_calls(fake, internal=False),  # the reminder and the receipt are for the customer
        post_comment(fake),
    ]
    assert fake.sent("PUT", issue) == [{"update": {"labels": [{"add": "needs-info"}]}}]
    comment, receipt = fake.our_comments()
    level = "P2" if deployment is CLOUD else "P3"  # the priority each recorded issue already has in Jira
    assert f"handled as {level}." in (adf_text(receipt) if deployment is CLOUD else receipt.replace("*", ""))
    text = adf_text(comment) if deployment is CLOUD else comment
    for title in ("Customer", "Impact scope (who and how many are affected)", "Expected resolution time"):
        assert title in text
    if deployment is CLOUD:
        assert [kind for kind, _ in _blocks(comment)] == ["paragraph", "bulletList", "paragraph"]
    else:
        assert "\n* Customer\n* Customer tier\n" in comment

    # A later edit with the same information missing: the comment is not repeated (the journal knows
    # it was posted with this very text: nothing is read).
    seen = len(fake.calls())
    sopguard.deliver(as_edit(created, list(fake.labels)), "edit-1")
    assert fake.calls()[seen:] == []
    assert len(fake.our_comments()) == 2
    assert sopguard.outcomes("edit-1")["intake-required-fields"].startswith("skipped: already up to date")

    # Everything filled in: the label goes with the priority in one edit, and a follow-up says thanks.
    seen = len(fake.calls())
    sopguard.deliver(with_intake(as_edit(created, list(fake.labels))), "edit-2")
    assert fake.calls()[seen:] == [
        f"PUT {issue}",
        post_comment(fake),
        post_comment(fake),
    ]
    assert fake.sent("PUT", issue)[-1] == {
        "fields": {"priority": {"name": "Highest"}},
        "update": {"labels": [{"add": "priority-P1"}, {"remove": "needs-info"}]},
    }
    thanks, restated = fake.our_comments()[2:]
    assert "All required information is now present." in (adf_text(thanks) if deployment is CLOUD else thanks)
    assert "handled as P1, from impact" in (
        adf_text(restated) if deployment is CLOUD else restated.replace("*", "")
    )
    assert sopguard.outcomes("edit-2")["intake-required-fields"].startswith("applied (follow-up to comment")
    fake.check_against_openapi()


# --- checklists (S3.1, S4) ----------------------------------------------------------------------------------------


def test_a_valid_transition_creates_its_checklist_as_sub_tasks_once(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = subtasks_created(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)

    sopguard.deliver(scenario.payload, "work-1")

    assert fake.calls() == [
        MYSELF,
        FIELDS,
        "POST /rest/api/2/issue/bulk",  # every item in one request; the delivery showed none there
        *_comment_calls(fake),
    ]
    project_id = scenario.payload["issue"]["fields"]["project"]["id"]
    (bulk,) = fake.sent("POST", "/rest/api/2/issue/bulk")
    assert [update["fields"]["summary"] for update in bulk["issueUpdates"]] == fake.subtask_summaries()
    assert bulk["issueUpdates"][0] == {
        "fields": {
            "project": {"id": project_id},
            "parent": {"key": fake.key},
            "issuetype": {"name": "Sub-task"},
            "summary": "Preparation: Tools, documents and parts are ready",
        }
    }
    assert sopguard.outcomes("work-1")["preparation"] == "applied (4 created); applied"
    assert fake.subtask_summaries() == [
        "Preparation: Tools, documents and parts are ready",
        "Preparation: Authorizations are in place",
        "Preparation: The customer's contact person is confirmed",
        "Preparation: The quality and safety rules for this work are checked (S3.4)",
    ]
    assert fake.status == "Planning"  # the preparation is made ready while the plan is written (S3.1)

    # The same transition delivered again (its payload still without sub-tasks): nothing is created twice.
    seen = len(fake.calls())
    sopguard.deliver(scenario.payload, "work-2")
    assert fake.calls()[seen:] == []  # the journal knows the items and the comment: nothing is read
    assert len(fake.subtasks) == 4 and len(fake.our_comments()) == 1
    fake.check_against_openapi()


def test_a_close_with_open_checklist_sub_tasks_is_moved_back(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = close_blocked(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    issue = issue_path(fake)

    sopguard.deliver(scenario.payload, "close-1")

    # The root cause is in a comment: a Cloud delivery carries no comments, so they are read once;
    # it counts as the team's (S5.1), whose roles are read once.
    read_comments = [f"GET {issue}"] if deployment is CLOUD else []
    assert fake.calls() == [
        MYSELF,
        FIELDS,
        *read_comments,
        *team_reads(fake),
        f"GET {issue}/transitions",
        f"POST {issue}/transitions",
        *_comment_calls(fake),
    ]
    if deployment is CLOUD:
        assert fake.query("GET", issue) == [{"fields": ["comment"]}]
    assert fake.status == "Acceptance"
    results = sopguard.outcomes("close-1")
    assert (
        results["close-after-acceptance"]
        == "applied (transition 'Move to Acceptance' to Acceptance); applied"
    )
    comment = _only_comment(fake)
    text = adf_text(comment) if deployment is CLOUD else comment.replace("{{", "").replace("}}", "")
    assert "Customer acceptance: The customer confirms the result" in text
    assert "rule customer-accepted, SOP S4.2" in text and "Root cause" not in text
    fake.check_against_openapi()


# --- identity, events without an issue, redeliveries, retried deliveries -----------------------------------


def test_events_caused_by_the_service_itself_make_no_request_beyond_learning_who_it_is(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = by_the_service(transition_undone(deployment).payload, deployment)
    fake, sopguard = start(no_network, tmp_path / "var", Scenario("echo", payload), deployment)

    sopguard.deliver(payload, "own-1")

    assert fake.calls() == [MYSELF]
    assert fake.status == payload["issue"]["fields"]["status"]["name"]


def test_a_comment_by_the_service_is_recognised_by_its_author(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    payload = fixture_json("jira", "mattermost__webhook-cloud-comment-created.json")
    payload["comment"]["author"] = dict(CLOUD.myself)
    fake, sopguard = start(no_network, tmp_path / "var", Scenario("comment", payload), CLOUD)

    sopguard.deliver(payload, "own-comment")

    assert fake.calls() == [MYSELF]
    (entry,) = sopguard.intake.store.audit.entries()
    assert entry.reasons == ["caused by this service itself; nothing to do"]


@pytest.mark.parametrize(
    "name",
    ["jira-to-matrix__comment-created.json", "mattermost__webhook-server-comment-created.json"],
)
def test_comment_events_without_a_user_or_an_issue_are_processed_without_reading_the_issue(
    no_network: responses.RequestsMock, tmp_path: Path, name: str
) -> None:
    payload = fixture_json("jira", name)
    fake = FakeJira(no_network, DATA_CENTER, key="TES-4", status="In Progress")
    sopguard = service(tmp_path / "var", DATA_CENTER)

    sopguard.deliver(payload, f"comment-{name}")

    assert fake.calls() == [MYSELF]
    assert sopguard.intake.store.inbox.status("jira", f"comment-{name}") == "processed"


def test_a_redelivery_with_the_same_identifier_makes_no_request(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    sopguard.deliver(scenario.payload, "b1d3ab7e-retried")
    seen = len(fake.calls())

    # Kept at the door, then dropped as a duplicate as the inbox takes it in.
    assert sopguard.deliver(scenario.payload, "b1d3ab7e-retried") == "accepted"

    assert fake.calls()[seen:] == [] and len(fake.our_comments()) == 1


def test_a_delivery_run_again_after_a_crash_applies_nothing_twice(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """The worker died after acting but before recording: the delivery runs again, and the journal
    knows every write it made, so nothing is read or written again."""
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    previous = fake.status
    sopguard.deliver(scenario.payload, "crash-1")
    moved_to = fake.status
    store = sopguard.intake.store
    with store.engine.begin() as db:  # as the worker left it: still processing, its turn run out
        db.execute(update(deliveries).where(deliveries.c.key == "jira:crash-1").values(status="processing"))
    seen = len(fake.calls())

    assert drain(sopguard.app) == 1

    assert fake.calls()[seen:] == []
    assert fake.status == moved_to != previous and len(fake.our_comments()) == 1
    first, again = [e.outcome for e in store.audit.entries() if e.delivery_id == "crash-1"]
    # The move is reported as the journal recorded it when it was made (a crashed try leaves no audit
    # row, so this one says the issue was moved); the comment is known to be posted.
    move = first.split("; ")[0]
    assert move.startswith("applied (transition") and move.endswith(f"to {moved_to})")
    assert first == f"{move}; applied"
    assert again == f"{move}; skipped: already posted (comment {fake.comments[-1]['id']})"


def test_with_warm_caches_a_delivery_costs_only_its_own_requests(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    sopguard.deliver(scenario.payload, "warm-1")
    fake.status = scenario.payload["issue"]["fields"]["status"]["name"]  # a person moves it again
    seen = len(fake.calls())

    sopguard.deliver(scenario.payload, "warm-2")

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [  # the transitions out of this status were listed once
        f"POST {issue}/transitions",
        *_comment_calls(fake, first=False),
    ]
    assert len(fake.our_comments()) == 2


def test_a_cached_transition_jira_refuses_is_listed_again_and_the_move_made_once(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """The workflow changed since its transitions were listed (or the issue moved on): Jira answers
    the cached id with a 400, so the list is read again and the move made with what it says now."""
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    sopguard.deliver(scenario.payload, "warm-1")
    fake.status = scenario.payload["issue"]["fields"]["status"]["name"]
    refusal = '{"errorMessages": ["Transition id is not valid for this issue."]}'
    fake.fail("POST", "/transitions", (400, {"Content-Type": "application/json"}, refusal))
    seen = len(fake.calls())

    sopguard.deliver(scenario.payload, "warm-2")

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [
        f"POST {issue}/transitions",  # the cached id: refused
        f"GET {issue}",  # the status and the transitions out of it
        f"POST {issue}/transitions",
        post_comment(fake),
    ]
    previous = "To Do" if deployment is CLOUD else "In Progress"
    assert fake.status == previous and sopguard.slept == []
    assert sopguard.outcomes("warm-2")["follow-the-lifecycle"].startswith("applied (transition ")

    fake.status = scenario.payload["issue"]["fields"]["status"]["name"]
    seen = len(fake.calls())
    sopguard.deliver(scenario.payload, "warm-3")  # the list read again is the one cached now
    assert fake.calls()[seen:] == [f"POST {issue}/transitions", post_comment(fake)]


def test_a_cached_transition_refused_because_the_issue_moved_back_already_is_not_labelled_stuck(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """A person moved the issue back before the delivery was worked on: the cached transition is
    refused, the fresh list has no way to where it already is, and its status says so."""
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    sopguard.deliver(scenario.payload, "warm-1")  # moved back; the transitions are cached
    seen = len(fake.calls())

    sopguard.deliver(scenario.payload, "warm-2")  # the same skip again, already undone by a person

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [
        f"POST {issue}/transitions",  # refused: no transition leads from where it is to itself
        f"GET {issue}",  # the status: already there
        post_comment(fake),
    ]
    previous = "To Do" if deployment is CLOUD else "In Progress"
    assert "sop-violation" not in fake.labels
    assert sopguard.outcomes("warm-2")["follow-the-lifecycle"].startswith(f"skipped: already in {previous}")


def test_a_transition_added_to_the_workflow_is_used_within_the_cache_window(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """A cached list with no way back is not trusted: the admin may have added the transition the
    comment asked for, so the status and the transitions are read again before labelling."""
    scenario = no_way_back(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    sopguard.deliver(scenario.payload, "nowb-1")  # no way back: labelled, explained; the list cached
    assert "sop-violation" in fake.labels
    fake.unreachable.clear()  # the Jira admin adds the transition
    fake.labels.remove("sop-violation")
    seen = len(fake.calls())

    sopguard.deliver(scenario.payload, "nowb-2")  # the same skip again, within the cache's 5 minutes

    issue = issue_path(fake)
    assert fake.calls()[seen:] == [f"GET {issue}", f"POST {issue}/transitions", post_comment(fake)]
    previous = "To Do" if deployment is CLOUD else "In Progress"
    assert fake.status == previous and "sop-violation" not in fake.labels
    assert sopguard.outcomes("nowb-2")["follow-the-lifecycle"].startswith("applied (transition ")


def test_a_late_delivery_on_a_cold_cache_for_an_issue_already_moved_back(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """A person moved the issue back before the (late) delivery is worked on: the list read on a cold
    cache is of where the issue is, with no way to itself. Its status says it is there already (not
    stuck), and the list is cached under that status, not the one the delivery claims."""
    scenario = transition_undone(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    previous = "To Do" if deployment is CLOUD else "In Progress"
    fake.status = previous

    sopguard.deliver(scenario.payload, "late-1")

    assert sopguard.outcomes("late-1")["follow-the-lifecycle"].startswith(f"skipped: already in {previous}")
    assert "sop-violation" not in fake.labels
    # The same skip on an issue really where the delivery says: the list cached above is not used.
    fake.status = scenario.payload["issue"]["fields"]["status"]["name"]
    seen = len(fake.calls())
    sopguard.deliver(scenario.payload, "late-2")
    issue = issue_path(fake)
    assert fake.calls()[seen:] == [
        f"GET {issue}/transitions",
        f"POST {issue}/transitions",
        post_comment(fake),
    ]
    assert fake.status == previous and "sop-violation" not in fake.labels
    fake.check_against_openapi()


def test_a_checklist_sub_task_moving_is_not_judged_and_costs_nothing_but_learning_who_we_are(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Closing a checklist item is a person's work on a sub-task, not a service request's transition."""
    payload = with_status_change(
        fixture_json("jira", "mattermost__webhook-issue-updated-resolved.json"), "To Do", "Done"
    )
    payload["issue"]["fields"]["issuetype"] = {"id": "10003", "name": "Sub-task", "subtask": True}
    payload["issue"]["fields"]["parent"] = {"key": "TES-40", "id": "10039"}
    fake, sopguard = start(no_network, tmp_path / "var", Scenario("sub-task closed", payload), CLOUD)

    sopguard.deliver(payload, "subtask-1")

    assert fake.calls() == [MYSELF]
    assert fake.status == "Done"


def test_the_checklist_comment_calls_them_sub_tasks_on_jira(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = subtasks_created(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)

    sopguard.deliver(scenario.payload, "work-2")

    texts = [adf_text(c) if deployment is CLOUD else c.replace("*", "") for c in fake.our_comments()]
    assert any(": one sub-task per item was created" in text for text in texts), texts
