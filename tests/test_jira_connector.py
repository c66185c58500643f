"""The Jira connector's parts: the client it builds, its caches, what it reads, and its pure helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from jira import JIRAError

from config.loader import load_policy
from config.schema import Policy
from config.settings import Settings
from connector.base import MemoryJournal
from connector.delivery import Delivery
from connector.dry_run import DryRunConnector
from connector.factory import build_connectors
from connector.jira import markers
from connector.jira.api import JiraApi, ambiguous, build_client, classify
from connector.jira.connector import (
    FieldIndex,
    JiraConnector,
    edit_body,
    missing_fields,
    no_way_back_note,
    with_names,
    with_note,
)
from connector.retry import BACK_OFF, GIVE_UP, Verdict
from policies.models import (
    Action,
    Actor,
    CommentPolicy,
    CreateSubtasks,
    Event,
    IssueRef,
    IssueSnapshot,
    PostComment,
)
from policies.needs import Needs
from tests.conftest import fixture_json
from tests.jira_support import CLOUD, DATA_CENTER, FIELD_IDS, FakeJira, with_intake

CLOUD_TRANSITION = "mattermost__webhook-issue-updated-started-working.json"


def _settings(tmp_path: Path, **credentials: object) -> Settings:
    return Settings(data_dir=tmp_path).model_copy(update=credentials)


def _error(status: int, headers: dict[str, str] | None = None) -> JIRAError:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    return JIRAError(status_code=status, response=response)


# --- the client and the factory ---------------------------------------------------------------------


def test_the_client_makes_no_request_when_built_and_retries_nothing_itself(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    client = build_client(_settings(tmp_path, **CLOUD.credentials, tracker_timeout=7.5))

    assert len(no_network.calls) == 0  # not even serverInfo
    assert client._session.max_retries == 0
    assert client._session.timeout == 7.5


@pytest.mark.parametrize(
    ("deployment", "authorization"),
    [
        (CLOUD, "Basic c29wZ3VhcmRAZXhhbXBsZS5jb206Y2xvdWQtYXBpLXRva2Vu"),
        (DATA_CENTER, "Bearer dc-personal-access-token"),
    ],
    ids=["cloud", "dc"],
)
def test_cloud_signs_in_with_email_and_token_and_data_center_with_a_personal_access_token(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Any, authorization: str
) -> None:
    fake = FakeJira(no_network, deployment, key="TES-1", status="To Do")
    api = JiraApi.from_settings(_settings(tmp_path, **deployment.credentials))

    assert api.myself() == deployment.myself

    (request,) = fake.requests()
    assert request.headers["Authorization"] == authorization


def test_the_factory_uses_the_jira_connector_only_when_jira_is_configured(tmp_path: Path) -> None:
    policy = load_policy()
    configured = build_connectors(_settings(tmp_path, **CLOUD.credentials), policy)
    dry = build_connectors(_settings(tmp_path, **CLOUD.credentials, dry_run=True), policy)
    missing = build_connectors(_settings(tmp_path, jira_url=CLOUD.server), policy)

    assert isinstance(configured["jira"], JiraConnector) and configured["jira"].policy is policy
    assert isinstance(dry["jira"], DryRunConnector) and isinstance(missing["jira"], DryRunConnector)


# --- the retry layer's view of failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "verdict", "may_have_happened"),
    [
        (_error(429, {"Retry-After": "5"}), Verdict(True, 5.0), False),
        (_error(503), Verdict(True, None), False),
        (_error(500), BACK_OFF, True),
        (_error(502), BACK_OFF, True),
        (_error(504), BACK_OFF, True),
        (_error(400), GIVE_UP, False),
        (_error(404), GIVE_UP, False),
        (requests.ConnectTimeout("no route"), BACK_OFF, False),
        (requests.ReadTimeout("slow"), BACK_OFF, True),
        (requests.ConnectionError("reset"), BACK_OFF, True),
        (ValueError("not JSON"), GIVE_UP, False),
    ],
)
def test_failures_are_retried_and_judged_ambiguous_as_documented(
    error: BaseException, verdict: Verdict, may_have_happened: bool
) -> None:
    assert classify(error) == verdict
    assert ambiguous(error) is may_have_happened


# --- who we are, the deployment, the fields ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment", "accounts"),
    [(CLOUD, {"557058:sopguard-bot"}), (DATA_CENTER, {"sopguard", "JIRAUSER10900"})],
    ids=["cloud", "dc"],
)
def test_the_service_account_is_learned_once(
    no_network: responses.RequestsMock,
    tmp_path: Path,
    default_policy: Policy,
    deployment: Any,
    accounts: set[str],
) -> None:
    fake = FakeJira(no_network, deployment, key="TES-1", status="To Do")
    connector = JiraConnector(
        JiraApi.from_settings(_settings(tmp_path, **deployment.credentials)), default_policy
    )
    delivery = Delivery("jira", "d", "jira:issue_updated", {})

    assert connector.service_accounts(delivery) == accounts
    assert connector.service_accounts(delivery) == accounts
    assert connector.is_cloud() is (deployment is CLOUD) and connector.is_cloud() is (deployment is CLOUD)
    assert fake.calls() == ["GET /rest/api/2/myself", "GET /rest/api/2/serverInfo"]


def test_field_names_are_resolved_once_and_refreshed_only_when_a_name_is_unknown_for_a_while(
    no_network: responses.RequestsMock, tmp_path: Path, default_policy: Policy
) -> None:
    fake = FakeJira(no_network, CLOUD, key="TES-41", status="In Progress")
    now = [1000.0]
    connector = JiraConnector(
        JiraApi.from_settings(_settings(tmp_path, **CLOUD.credentials)),
        default_policy,
        refresh_after=300,
        clock=lambda: now[0],
    )

    connector.field_index(["Impact"])
    connector.field_index(["Impact", "Urgency"])
    connector.field_index(["Severity"])  # unknown, but the list was just read
    now[0] += 301
    connector.field_index(["Impact"])  # stale, but every name is known
    index = connector.field_index(["Severity"])  # unknown and stale: read again

    assert fake.calls() == ["GET /rest/api/2/field", "GET /rest/api/2/field"]
    assert index.knows("impact") and not index.knows("Severity")


def test_transitions_are_listed_once_per_workflow_step_and_again_when_old_or_asked_for(
    no_network: responses.RequestsMock, tmp_path: Path, default_policy: Policy
) -> None:
    fake = FakeJira(no_network, CLOUD, key="TES-41", status="In Progress")
    now = [1000.0]
    connector = JiraConnector(
        JiraApi.from_settings(_settings(tmp_path, **CLOUD.credentials)),
        default_policy,
        refresh_after=300,
        clock=lambda: now[0],
    )
    in_progress, bug = ("TES", "10002", "in progress"), ("TES", "10004", "in progress")

    listed, listed_now = connector.transitions("TES-41", in_progress)
    assert listed_now and "In Progress" not in {t["to"]["name"] for t in listed}
    assert connector.transitions("TES-41", in_progress) == (listed, False)  # from the cache
    assert connector.transitions("TES-41", bug)[1]  # another issue type: another workflow
    assert connector.transitions("TES-41", None)[1]  # a step the delivery did not tell: never cached
    assert connector.transitions("TES-41", in_progress, fresh=True)[1]  # after a 400 on a cached id
    now[0] += 301
    assert connector.transitions("TES-41", in_progress)[1]  # old: listed again

    assert fake.calls() == ["GET /rest/api/2/issue/TES-41/transitions"] * 5


def test_values_get_their_field_names_and_of_two_fields_with_one_name_the_filled_one_counts() -> None:
    index = FieldIndex.of(
        [
            {"id": "customfield_1", "name": "Impact"},
            {"id": "customfield_2", "name": "impact"},
            {"id": "customfield_3", "name": "Urgency"},
        ],
        loaded_at=0,
    )
    fields = {"customfield_1": "", "customfield_2": "Minor", "customfield_3": ""}

    named = with_names(fields, ["Impact", "Urgency", "Customer"], index)

    assert named == {**fields, "Impact": "Minor"}  # an empty value is as good as missing


def test_complete_adds_name_keyed_values_without_reading_the_issue(
    no_network: responses.RequestsMock, tmp_path: Path, default_policy: Policy
) -> None:
    payload = with_intake(fixture_json("jira", CLOUD_TRANSITION))
    fake = FakeJira(no_network, CLOUD, key="TES-41", status="In Progress")
    connector = JiraConnector(JiraApi.from_settings(_settings(tmp_path, **CLOUD.credentials)), default_policy)
    delivery = Delivery("jira", "d", "jira:issue_updated", payload)
    event, snapshot = delivery.normalize()

    completed = connector.complete(delivery, event, snapshot, Needs(subtasks=True))

    assert (
        completed.fields["Impact"] == "Business outage"
        and completed.fields[FIELD_IDS["Impact"]] == "Business outage"
    )
    assert completed.fields["Customer"] == "ACME Corp"
    assert fake.calls() == ["GET /rest/api/2/field"]  # the payload carries the sub-tasks


def test_comments_beyond_the_first_page_are_read_page_by_page(
    no_network: responses.RequestsMock, tmp_path: Path, default_policy: Policy
) -> None:
    """An issue with 150 comments: the issue's comment field holds 100, the second page the rest."""
    comments = [{"id": str(i), "author": {"name": "dana"}, "body": f"note {i}"} for i in range(150)]
    comments[149]["body"] = "h3. Root cause\nThe disk."
    issue = f"{CLOUD.server}/rest/api/2/issue/TES-41"
    no_network.add("GET", f"{CLOUD.server}/rest/api/2/field", json=[])
    no_network.add(
        "GET",
        issue,
        json={"key": "TES-41", "fields": {"comment": {"comments": comments[:100], "total": 150}}},
    )
    no_network.add("GET", f"{issue}/comment", json={"startAt": 100, "total": 150, "comments": comments[100:]})
    connector = JiraConnector(JiraApi.from_settings(_settings(tmp_path, **CLOUD.credentials)), default_policy)
    delivery = Delivery("jira", "d", "jira:issue_updated", fixture_json("jira", CLOUD_TRANSITION))
    event, snapshot = delivery.normalize()

    completed = connector.complete(delivery, event, snapshot, Needs(comments=True))

    assert len(completed.comments) == 150 and completed.comments[-1].body.startswith("h3. Root cause")
    assert [c.request.url for c in no_network.calls][1:] == [
        f"{issue}?fields=comment",
        f"{issue}/comment?startAt=100&maxResults=100&expand=properties",
    ]


def test_only_what_the_rules_need_and_the_delivery_lacks_is_fetched() -> None:
    cloud = fixture_json("jira", CLOUD_TRANSITION)  # sub-tasks, no comments
    dc = fixture_json("jira", "mattermost__webhook-server-issue-updated-resolved.json")  # both
    partial = json.loads(json.dumps(dc))
    partial["issue"]["fields"]["comment"] = {"comments": [{"id": "1"}], "total": 3}

    assert missing_fields(cloud, Needs(subtasks=True, comments=True)) == ["comment"]
    assert missing_fields(cloud, Needs(subtasks=True)) == []
    assert missing_fields(dc, Needs(subtasks=True, comments=True)) == []
    assert missing_fields(partial, Needs(comments=True)) == ["comment"]
    assert missing_fields({}, Needs(subtasks=True)) == ["subtasks"]


# --- what is sent, and what is said ------------------------------------------------------------------------


def test_priority_and_labels_make_one_edit_body() -> None:
    assert edit_body("High", {"b", "a"}, {"c"}) == {
        "fields": {"priority": {"name": "High"}},
        "update": {"labels": [{"add": "a"}, {"add": "b"}, {"remove": "c"}]},
    }
    assert edit_body(None, [], []) == {}


def test_the_note_on_a_change_that_could_not_be_undone_closes_the_comment() -> None:
    note = no_way_back_note("en", "In Progress", "To Do")

    amended = with_note("**This change of stage does not follow the service procedure.**\n", note)

    assert amended == (
        "**This change of stage does not follow the service procedure.**\n"
        "\n"
        "**Jira could not undo this change:** the workflow has no transition from **In Progress** back to "
        "**To Do**, so the issue stays in In Progress and is labelled `sop-violation` for review. A Jira "
        "admin can add the transition (`sopguard export jira-workflow` lists the ones the procedure needs).\n"
    )
    assert "**Jira 无法撤销此变更：**" in no_way_back_note("zh-CN", "In Progress", "To Do")


# --- the comment markers -----------------------------------------------------------------------------------


def test_the_markers_of_an_older_release_are_read_as_it_wrote_them() -> None:
    assert markers.decode({"version": 1, "comments": {"a": {"id": 7, "digest": "d"}}}) == {
        "a": markers.Posted("7", "d")
    }
    assert markers.decode({"comments": {"a": {"id": 7}}}) == {"a": markers.Posted("7", "")}
    assert markers.decode(None) == {} and markers.decode({"comments": []}) == {}


@pytest.mark.parametrize(
    ("policy", "earlier", "digest", "reason"),
    [
        (CommentPolicy.ONCE, None, "a", None),
        (CommentPolicy.ONCE, markers.Posted("7", "a"), "b", "skipped: already posted (comment 7)"),
        (CommentPolicy.UPSERT, None, "a", None),
        (CommentPolicy.UPSERT, markers.Posted("7", "a"), "a", "skipped: already up to date (comment 7)"),
        (CommentPolicy.UPSERT, markers.Posted("7", "a"), "b", None),
        (CommentPolicy.UPDATE_ONLY, None, "a", "skipped: no earlier comment to update"),
        (CommentPolicy.UPDATE_ONLY, markers.Posted("7", "a"), "a", "skipped: already up to date (comment 7)"),
        (CommentPolicy.UPDATE_ONLY, markers.Posted("7", "a"), "b", None),
    ],
)
def test_when_a_comment_is_posted(
    policy: CommentPolicy, earlier: markers.Posted | None, digest: str, reason: str | None
) -> None:
    assert markers.skip_reason(policy, earlier, digest) == reason


def test_a_comment_is_found_by_the_marker_and_the_digest_in_its_properties() -> None:
    def comment(value: dict[str, str]) -> dict[str, Any]:
        return {"id": "1", "properties": [{"key": "other", "value": {}}, {"key": "sopguard", "value": value}]}

    assert markers.posted_as(comment({"marker": "m", "digest": "d"}), "m", "d")
    assert not markers.posted_as(comment({"marker": "m", "digest": "e"}), "m", "d")  # the one it follows up
    assert not markers.posted_as(comment({"marker": "n", "digest": "d"}), "m", "d")
    assert markers.posted_as(comment({"marker": "m"}), "m", "d")  # an older release kept no digest
    assert not markers.posted_as({"id": "2"}, "m", "d")


def test_actions_need_nothing_from_the_payload_so_work_can_be_done_later_without_a_delivery(
    no_network: responses.RequestsMock, tmp_path: Path, default_policy: Policy
) -> None:
    """A comment and a checklist for an issue known only by its key (a timer, not a webhook)."""
    fake = FakeJira(no_network, DATA_CENTER, key="TES-4", status="In Progress")
    connector = JiraConnector(
        JiraApi.from_settings(_settings(tmp_path, **DATA_CENTER.credentials)), default_policy
    )
    ref = IssueRef("jira", "TES", "TES-4")
    event = Event(source="jira", kinds=frozenset(), delivery_id="later-1", actor=Actor(""), issue=ref)
    actions: list[Action] = [
        CreateSubtasks("self-check", "self-check", ("Self-check: The problem is solved",)),
        PostComment("first-response", "sla:first-response:warn", "**Please answer** the customer."),
    ]

    applied = connector.apply(
        Delivery("jira", "later-1", "later", {}), event, IssueSnapshot(ref), actions, MemoryJournal()
    )

    assert [a.outcome for a in applied] == ["applied (1 created)", "applied"]
    (bulk,) = fake.sent("POST", "/rest/api/2/issue/bulk")
    assert bulk["issueUpdates"][0]["fields"]["project"] == {"key": "TES"}
    assert fake.our_comments() == ["*Please answer* the customer."]
