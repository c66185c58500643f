"""Jira Service Management (issue 10): on a service project the customer reads what is written for
them (the receipt, the rating request) and not what is written for the team (SLA warnings,
escalations), which are internal notes; the request type and the customer's organization feed the
intake and the priority. The deliveries are a real Cloud `jira:issue_created` made a service
project's request (`jsm__issue-created.derived.json`, see tests/fixtures/SOURCES.md)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import requests
import responses
from sqlalchemy import update

from config.loader import PolicyError, load_policy
from config.schema import Adoption, Policy, Scope, ScopeMatch
from connector.base import KnownIssue, MemoryJournal
from connector.delivery import Delivery
from connector.jira import events
from connector.jira.connector import JiraConnector
from policies import priority
from policies.context import Context
from policies.models import (
    Actor,
    Comment,
    Event,
    EventKind,
    IssueRef,
    IssueSnapshot,
    MoveToStatus,
    PostComment,
)
from policies.needs import needs
from policies.visibility import with_visibility
from runtime.adopt import adopt
from runtime.services import Services
from runtime.store.schema import issues
from runtime.sweep import sweep
from tests.conftest import fixture_json, services_of
from tests.jira_support import (
    CLOUD,
    DATA_CENTER,
    FIELD_IDS,
    INTAKE_VALUES,
    Deployment,
    FakeJira,
    Service,
    as_edit,
    fake_for,
    project_type_read,
    status_json,
    subtask_json,
    with_intake,
    with_status_change,
)
from tests.jira_support import service as jira_service
from tests.openapi_check import SPECS

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
JSM_CREATED = "jsm__issue-created.derived.json"
INTERNAL: dict[str, Any] = {"key": "sd.public.comment", "value": {"internal": True}}


def _request(deployment: Deployment, name: str = JSM_CREATED, **intake: str) -> dict[str, Any]:
    """The customer's P1 request (a business outage, urgent), created at Monday 10:00 in Shanghai.

    Data Center's deliveries do not say the project's type, nor name people by account id."""
    payload = with_intake(
        fixture_json("jira", name),
        {
            **INTAKE_VALUES,
            "Impact": "Business outage",
            "Urgency": "High",
            "Customer tier": "Standard",
            **intake,
        },
    )
    payload["timestamp"] = int(MONDAY_10.timestamp() * 1000)
    payload["issue"]["fields"]["created"] = MONDAY_10.isoformat()
    if deployment is DATA_CENTER:
        del payload["issue"]["fields"]["project"]["projectTypeKey"]
        customer = {"name": "customer", "key": "JIRAUSER10100", "displayName": "Example Customer"}
        payload["user"] = payload["issue"]["fields"]["reporter"] = customer
    return payload


def _start(
    tmp_path: Path,
    mock: responses.RequestsMock,
    deployment: Deployment,
    payload: dict[str, Any],
    project_type: str,
) -> tuple[FakeJira, Service]:
    fake = fake_for(mock, deployment, payload)
    fake.project_type = project_type
    sopguard = jira_service(tmp_path, deployment)
    _services(sopguard).clock = lambda: MONDAY_10
    return fake, sopguard


def _services(sopguard: Service) -> Services:
    return services_of(sopguard.app)


def _sweep(sopguard: Service, when: dt.datetime, mock: responses.RequestsMock) -> list[str]:
    mock.calls.reset()
    sweep(_services(sopguard), when)
    return [f"{c.request.method} {c.request.path_url.split('?')[0]}" for c in mock.calls]


def _ours(fake: FakeJira) -> list[dict[str, Any]]:
    return [c for c in fake.comments if c["author"] == fake.deployment.myself]


def _marker(comment: dict[str, Any]) -> str:
    return str(next(p["value"]["marker"] for p in comment["properties"] if p["key"] == "sopguard"))


def _visibility(fake: FakeJira) -> list[tuple[str, bool]]:
    """Each comment sopguard posted: its marker's kind, and whether the customer reads it."""
    listed = [(_marker(c).split(":")[0], fake.is_public(c)) for c in _ours(fake)]
    if fake.deployment is CLOUD:  # and as Jira lists it
        assert [public for _, public in listed] == [c["jsdPublic"] for c in _ours(fake)]
    return listed


def _text(comment: dict[str, Any]) -> str:
    return json.dumps(comment["body"], ensure_ascii=False)


def _closed(payload: dict[str, Any]) -> dict[str, Any]:
    """The request closed from customer acceptance: every checklist item done, the customer's
    acceptance recorded (their `/accept`); the agent gave the root cause (`_root_cause_by_an_agent`)."""
    closed = with_status_change(payload, "Acceptance", "Done")
    closed["changelog"]["items"] = closed["changelog"]["items"][-1:]  # the status alone changed
    closed["webhookEvent"], closed["issue_event_type_name"] = "jira:issue_updated", "issue_generic"
    closed["timestamp"] = int((MONDAY_10 + dt.timedelta(hours=2)).timestamp() * 1000)
    fields = closed["issue"]["fields"]
    fields["labels"] = ["priority-P1", "sla/breached", "customer-accepted"]
    items = [
        "Customer acceptance: The customer confirms the result",
        "Deliverables: Service report handed over",
        "Deliverables: Documentation updated and handed over",
    ]
    fields["subtasks"] = [subtask_json(f"TES-{500 + n}", item, "Done") for n, item in enumerate(items)]
    return closed


def _root_cause_by_an_agent(fake: FakeJira, closed: dict[str, Any]) -> None:
    """An agent of the service desk writes the root cause (S5.1) in an internal note."""
    agent = {"accountId": "557058:amy", "displayName": "Amy Agent"} if fake.deployment is CLOUD else AGENT
    fake.in_role("Service Desk Team", users=[agent.get("accountId") or agent["name"]])
    note = {
        "id": "20002",
        "author": agent,
        "body": "h3. Root cause\n\nA full disk.",
        "properties": [INTERNAL],
    }
    fake.comments.append(note)
    if "comment" in closed["issue"]["fields"]:  # a Data Center delivery lists the comments
        closed["issue"]["fields"]["comment"]["comments"].append(copy.deepcopy(note))


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_a_p1_request_gets_a_public_receipt_internal_sla_notices_and_a_public_rating_request(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    request = _request(deployment)
    fake, sopguard = _start(tmp_path, no_network, deployment, request, "service_desk")

    sopguard.deliver(request, "created")

    assert fake.priority == "Highest"
    assert _visibility(fake) == [("receipt", True)]
    assert [p["key"] for p in _ours(fake)[0]["properties"]] == ["sopguard"]  # public: no property

    assert _sweep(sopguard, MONDAY_10 + dt.timedelta(minutes=11, seconds=15), no_network) == [
        *project_type_read(fake),  # Data Center's delivery did not say it is a service project
        f"POST /rest/api/{'3' if deployment is CLOUD else '2'}/issue/{fake.key}/comment",
    ]
    warning = _ours(fake)[-1]
    assert "75%" in _text(warning) and INTERNAL in warning["properties"]
    _sweep(sopguard, MONDAY_10 + dt.timedelta(minutes=15), no_network)
    breach = _ours(fake)[-1]
    assert "was missed" in _text(breach) and INTERNAL in breach["properties"]
    assert "sla/breached" in fake.labels

    ref = IssueRef("jira", fake.project, fake.key)
    _services(sopguard).store.ledger.remember_state(ref, "acceptance", MONDAY_10)
    accepted = as_edit(request, ["priority-P1", "sla/breached", "customer-accepted"])  # by the customer
    accepted["changelog"]["items"] = [
        {"field": "labels", "fieldtype": "jira", "toString": "customer-accepted"}
    ]
    accepted["timestamp"] = int((MONDAY_10 + dt.timedelta(hours=1)).timestamp() * 1000)
    fake.labels = ["priority-P1", "sla/breached", "customer-accepted"]
    accepted["issue"]["fields"]["priority"] = {"name": "Highest", "id": "1"}  # as sopguard set it
    accepted["issue"]["fields"]["status"] = status_json("Acceptance")
    sopguard.deliver(accepted, "accepted")
    fake.status = "Done"
    closed = _closed(request)
    _root_cause_by_an_agent(fake, closed)
    for subtask in closed["issue"]["fields"]["subtasks"]:  # the customer ticked off each item
        fake.closed_by(subtask["key"], request["issue"]["fields"]["reporter"])
    sopguard.deliver(closed, "closed")

    assert _visibility(fake) == [("receipt", True), ("sla", False), ("sla", False), ("satisfaction", True)]
    assert "how satisfied are you" in _text(_ours(fake)[-1])
    fake.check_against_openapi()


def test_on_a_software_project_no_comment_is_an_internal_note(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    request = _request(CLOUD, "mattermost__webhook-issue-created.json")
    fake, sopguard = _start(tmp_path, no_network, CLOUD, request, "software")

    sopguard.deliver(request, "created")
    # Another process sweeps: what the delivery said of the project is kept with the issue.
    first = _services(sopguard)
    fresh = JiraConnector.from_settings(first.settings, first.policy)
    other = Services(first.settings, first.policy, first.store, {**first.connectors, "jira": fresh})
    sweep(other, MONDAY_10 + dt.timedelta(minutes=11, seconds=15))
    sweep(other, MONDAY_10 + dt.timedelta(minutes=15))

    assert [kind for kind, _ in _visibility(fake)] == ["receipt", "sla", "sla"]
    assert all([p["key"] for p in c["properties"]] == ["sopguard"] for c in _ours(fake))
    assert f"GET /rest/api/2/project/{fake.project}" not in fake.calls()
    fake.check_against_openapi()


def test_where_jira_does_not_say_the_projects_type_a_note_stays_internal(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    """An internal note on a project that is not a service one is only a comment property; a public
    comment on a service project is read by the customer. So an unreadable type counts as service."""
    request = _request(DATA_CENTER)
    fake, sopguard = _start(tmp_path, no_network, DATA_CENTER, request, "software")
    fake.fail("GET", f"/project/{fake.project}", (403, {}, '{"errorMessages": ["No permission"]}'))
    sopguard.deliver(request, "created")

    _sweep(sopguard, MONDAY_10 + dt.timedelta(minutes=11, seconds=15), no_network)

    assert INTERNAL in _ours(fake)[-1]["properties"]


@pytest.mark.parametrize(
    "value",
    [True, {"internal": "true"}, {"public": False}, "internal", None],
    ids=["bare-boolean", "string", "other-key", "string-value", "null"],
)
def test_the_stand_in_jira_refuses_an_internal_note_property_of_another_shape(
    no_network: responses.RequestsMock, value: Any
) -> None:
    """So that a wrong shape of `sd.public.comment` cannot pass the tests: only `{"internal": <bool>}`
    (Jira itself stores any JSON as a property, and Jira Service Management then ignores it)."""
    fake = FakeJira(no_network, CLOUD, key="TES-4", status="To Do")
    url = f"{CLOUD.server}/rest/api/3/issue/TES-4/comment"
    body: dict[str, Any] = {"body": {"type": "doc", "version": 1, "content": []}}
    shaped: dict[str, Any] = {"key": "sd.public.comment", "value": value}

    refused = requests.post(url, json={**body, "properties": [shaped]})
    taken = requests.post(url, json={**body, "properties": [INTERNAL]})

    assert refused.status_code == 400 and taken.status_code == 201
    assert [c["jsdPublic"] for c in fake.comments] == [False]


# --- the policy: who reads what ---------------------------------------------------------------------


def _comment(kind: str, rule_id: str = "some-rule") -> PostComment:
    return PostComment(rule_id, f"{kind}:1", "text", kind=kind)


def test_the_defaults_keep_the_customer_to_what_is_written_for_them() -> None:
    desk = load_policy().trackers.jira.service_desk

    public = ["receipt", "intake-missing", "satisfaction"]
    internal = ["sla-warning", "sla-breached", "transition-rejected", "label-refused", "command-answer"]
    assert [desk.visibility(kind) for kind in public] == ["public"] * len(public)
    internal += ["plan-changed", "low-rating", "delay-refused"]
    assert [desk.visibility(kind) for kind in internal] == ["internal"] * len(internal)


def test_a_policy_makes_a_kind_or_one_rules_comments_public(tmp_path: Path) -> None:
    text = Path("config/sop.yaml").read_text(encoding="utf-8")
    changed = text.replace(
        "    subtask_issue_type: Sub-task\n",
        "    subtask_issue_type: Sub-task\n"
        "    service_desk:\n"
        "      comments: {sla-warning: public, command-delay: public}\n",
        1,
    )
    (tmp_path / "policy.yaml").write_text(changed, encoding="utf-8")
    desk = load_policy(tmp_path / "policy.yaml").trackers.jira.service_desk

    assert desk.visibility("sla-warning", "first-response") == "public"
    assert desk.visibility("command-answer", "command-delay") == "public"  # the rule wins over its kind
    assert desk.visibility("command-answer", "command-accept") == "internal"


def test_an_unknown_comment_name_is_refused_where_it_is_written(tmp_path: Path) -> None:
    text = Path("config/sop.yaml").read_text(encoding="utf-8")
    changed = text.replace(
        "    subtask_issue_type: Sub-task\n",
        "    subtask_issue_type: Sub-task\n    service_desk:\n      comments: {sla-warnings: public}\n",
        1,
    )
    (tmp_path / "policy.yaml").write_text(changed, encoding="utf-8")

    with pytest.raises(PolicyError) as refused:
        load_policy(tmp_path / "policy.yaml")

    assert (
        "trackers.jira.service_desk.comments.sla-warnings: 'sla-warnings' is neither a kind of comment"
        in str(refused.value)
    )


def test_the_answer_to_a_customers_command_is_public() -> None:
    """The reporter, a request participant or a colleague of their organization: whoever is not of
    the team reads the answer only if it is public."""
    policy = load_policy()
    event, snapshot = events.to_event("c-1", _request(CLOUD))
    customer = Actor(snapshot.reporter, id=snapshot.reporter_id)
    colleague = Actor("Colleague at Acme", id="qm:other-customer")
    agent = Actor("amy", id="557058:amy")
    answer = _comment("command-answer", "command-accept")

    def public(by: Actor, teams: frozenset[str] = frozenset()) -> bool:
        given = replace(event, comment=Comment(by, "/accept"))
        [shown] = with_visibility(policy, given, replace(snapshot, actor_teams=teams), [answer])
        assert isinstance(shown, PostComment)
        return shown.public

    assert public(customer) and public(colleague)
    assert not public(agent, frozenset({"team-members"}))


def test_on_jira_whether_a_commands_author_is_of_the_team_is_looked_up() -> None:
    policy = load_policy()
    event, snapshot = events.to_event("c-1", _request(CLOUD))
    agent = Actor("amy", id="557058:amy")
    # An internal note is no first response: its author is looked up for the command alone.
    note = Comment(agent, "/accept", public=False)
    given = replace(event, kinds=frozenset({EventKind.COMMENTED}), comment=note)

    assert "team-members" in needs(policy, given, snapshot).teams


def test_a_comment_is_internal_unless_something_decides_it_is_public() -> None:
    """Fail closed: a comment built outside the engine's visibility decision never reaches the
    customer of a service project by accident (GitHub posts every comment publicly regardless)."""
    assert PostComment("some-rule", "m:1", "text").public is False


@pytest.mark.parametrize(
    ("desk", "internal"), [({}, True), ({"comments": {"transition-rejected": "public"}}, False)]
)
def test_the_note_that_a_change_could_not_be_undone_is_as_the_policy_says(
    tmp_path: Path, no_network: responses.RequestsMock, desk: dict[str, Any], internal: bool
) -> None:
    """The connector's own note (no rule's comment to append it to) takes the visibility decision
    of its kind, `transition-rejected`, as the engine's comments do."""
    fake = FakeJira(no_network, DATA_CENTER, key="TES-4", status="In Progress")
    fake.project_type, fake.unreachable = "service_desk", {"To Do"}
    sopguard = jira_service(tmp_path, DATA_CENTER)
    sopguard.connector.policy = _with_desk(**desk)
    ref = IssueRef("jira", "TES", "TES-4")
    event = Event(source="jira", kinds=frozenset(), delivery_id="d-1", actor=Actor("amy"), issue=ref)
    snapshot = IssueSnapshot(ref, status="In Progress")

    sopguard.connector.apply(
        Delivery("jira", "d-1", "later", {}),
        event,
        snapshot,
        [MoveToStatus("workflow", "To Do")],
        MemoryJournal(),
    )

    [note] = _ours(fake)
    assert _marker(note) == "not-undone:d-1"
    assert (INTERNAL in note["properties"]) is internal


@pytest.mark.parametrize(
    ("kept", "kind", "public"),
    [
        ({"rule_id": "confirm-receipt", "marker": "receipt"}, "receipt", True),
        ({"rule_id": "intake-required-fields", "marker": "intake-required-fields"}, "intake-missing", True),
        ({"rule_id": "first-response", "marker": "sla:first-response:1:1"}, "sla-breached", False),
        ({"rule_id": "sop-workflow", "marker": "transition-rejected:a:b:d-1"}, "transition-rejected", False),
    ],
    ids=["receipt", "intake-reminder", "sla-breach", "rejection"],
)
def test_an_unfinished_comment_kept_before_comments_had_a_visibility_is_read_by_its_kind(
    tmp_path: Path, kept: dict[str, str], kind: str, public: bool
) -> None:
    """A row of the ledger written by an earlier release names neither the comment's kind nor
    whether the customer reads it: a receipt retried after the upgrade still reaches the customer."""
    sopguard = jira_service(tmp_path, CLOUD)
    store = _services(sopguard).store
    ref = IssueRef("jira", "TES", "TES-41")
    store.ledger.remember_state(ref, "new", MONDAY_10)
    old = {
        "type": "comment",
        **kept,
        "body": "**Received.**",
        "on_existing": "upsert",
        "delivery": "created",
        "sop": "S1.4",
        "mode": "enforce",
        "attempts": 1,
        "next_at": MONDAY_10.isoformat(),
    }
    with store.ledger.engine.begin() as db:
        db.execute(update(issues).where(issues.c.ref == "jira:TES-41").values(unfinished=[old]))

    followed = store.ledger.one(ref)

    assert followed is not None
    [item] = followed.unfinished
    assert isinstance(item.part, PostComment)
    assert (item.part.kind, item.part.public) == (kind, public)


# --- request types and organizations ------------------------------------------------------------------


def test_the_delivery_names_the_request_type_and_the_customer_organizations() -> None:
    _, snapshot = events.to_event("created", fixture_json("jira", JSM_CREATED))

    assert snapshot.request_type == "Report a system problem"
    assert snapshot.organizations == ("Acme Bank",)
    assert events.snapshot(fixture_json("jira", "mattermost__webhook-issue-created.json")).request_type == ""


def _with_desk(**desk: Any) -> Any:
    policy = load_policy()
    jira = policy.trackers.jira
    service_desk = jira.service_desk.model_copy(update=desk)
    trackers = policy.trackers.model_copy(
        update={"jira": jira.model_copy(update={"service_desk": service_desk})}
    )
    return policy.model_copy(update={"trackers": trackers})


def _priority(policy: Any, payload: dict[str, Any]) -> str:
    """The level the policy's matrix gives the request (S1.3)."""
    event, snapshot = events.to_event("created", payload)
    # The connector names the fields the policy gives by name (`GET /field`).
    named = {
        name: snapshot.fields[field_id] for name, field_id in FIELD_IDS.items() if field_id in snapshot.fields
    }
    computed = priority.compute(
        Context(policy, event, replace(snapshot, fields={**snapshot.fields, **named}), MONDAY_10)
    )
    assert computed is not None
    return computed.level


def test_the_customers_organization_gives_the_tier_the_request_leaves_empty() -> None:
    degraded = _request(CLOUD, Impact="Degraded service", **{"Customer tier": ""})
    policy = _with_desk(organizations={"Acme Bank": "Strategic"})

    assert _priority(load_policy(), degraded) == "P2"
    assert _priority(policy, degraded) == "P1"  # a strategic customer's P2 is raised (S1.3)
    assert (
        _priority(policy, _request(CLOUD, Impact="Degraded service", **{"Customer tier": "Standard"})) == "P2"
    )


def _of_organizations(*names: str) -> dict[str, Any]:
    """A degraded-service request that leaves its tier empty, of these customer organizations as
    Jira lists them (in this order)."""
    payload = _request(CLOUD, Impact="Degraded service", **{"Customer tier": ""})
    [listed] = payload["issue"]["fields"]["customfield_10002"]
    link = listed["_links"]["self"].rsplit("/", 1)[0]
    payload["issue"]["fields"]["customfield_10002"] = [
        {**listed, "id": str(n), "name": name, "_links": {"self": f"{link}/{n}"}}
        for n, name in enumerate(names, start=1)
    ]
    return payload


@pytest.mark.parametrize("names", [("Small Co", "Acme Bank"), ("Acme Bank", "Small Co")])
def test_a_request_of_several_organizations_takes_the_highest_tier_of_any(names: tuple[str, str]) -> None:
    policy = _with_desk(organizations={"Small Co": "Standard", "Acme Bank": "Strategic"})

    assert events.snapshot(_of_organizations(*names)).organizations == names
    assert _priority(policy, _of_organizations(*names)) == "P1"  # Acme Bank's Strategic raises the P2


def test_the_request_type_says_what_the_request_leaves_empty() -> None:
    unsaid = _request(CLOUD, Impact="")
    policy = _with_desk(request_types={"Report a system problem": {"impact": "Business outage"}})

    assert _priority(policy, unsaid) == "P1"


# --- the shapes, as Atlassian describes them -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        (("customfield_10010", "requestType"), "RequestTypeDTO"),
        (("customfield_10010", "currentStatus"), "CustomerRequestStatusDTO"),
        (("customfield_10002", 0), "OrganizationDTO"),
    ],
)
def test_the_request_fields_of_the_delivery_are_as_the_service_desk_api_describes_them(
    path: tuple[str | int, ...], schema: str
) -> None:
    spec = json.loads((SPECS / "jsm-cloud.openapi.json").read_text(encoding="utf-8"))
    value: Any = fixture_json("jira", JSM_CREATED)["issue"]["fields"]
    for step in path:
        value = value[step]

    jsonschema.validate(value, {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]})


# --- a scope per request type ---------------------------------------------------------------------


def _policy_with(tmp_path: Path, scopes: str) -> Policy:
    text = Path("config/sop.yaml").read_text(encoding="utf-8")
    (tmp_path / "policy.yaml").write_text(f"{text}\nscopes:\n{scopes}", encoding="utf-8")
    return load_policy(tmp_path / "policy.yaml")


@pytest.mark.parametrize(
    ("request_type", "notices"),
    [
        ("Report a system problem", ["resolution:0.75"]),
        ("Get IT help", ["first-response:0.75", "first-response:1", "resolution:0.75"]),
    ],
)
def test_a_request_types_scope_holds_for_its_requests_after_a_delivery_that_does_not_name_it(
    tmp_path: Path, no_network: responses.RequestsMock, request_type: str, notices: list[str]
) -> None:
    request = _request(CLOUD)
    request["issue"]["fields"]["customfield_10010"]["requestType"]["name"] = request_type
    fake, sopguard = _start(tmp_path, no_network, CLOUD, request, "service_desk")
    policy = _policy_with(
        tmp_path,
        "  - match: {jira: TES, request_type: report a system*}\n    rule_modes: {first-response: off}\n",
    )
    _services(sopguard).policy = sopguard.connector.policy = policy
    sopguard.deliver(request, "created")
    # The customer comments: Cloud's comment event shows a few fields of the issue, not its request type.
    commented = fixture_json("jira", "mattermost__webhook-cloud-comment-created.json")
    commented["issue"]["fields"]["project"]["projectTypeKey"] = "service_desk"
    commented["comment"]["author"] = request["user"]
    commented["timestamp"] = int((MONDAY_10 + dt.timedelta(minutes=5)).timestamp() * 1000)
    sopguard.deliver(commented, "commented")

    for minutes in (11.25, 15, 4.5 * 60):  # P1: a first response by 10:15, 75% of resolution at 14:00
        _sweep(sopguard, MONDAY_10 + dt.timedelta(minutes=minutes), no_network)

    said = [_marker(c).split(":") for c in _ours(fake) if _marker(c).startswith("sla:")]
    assert [f"{target}:{threshold}" for _, target, _, threshold in said] == notices


def _scoped_by_request_type(**overrides: Any) -> Policy:
    """The default policy with a scope for the requests of the fixture's type, overriding sections."""
    base = load_policy()
    match = ScopeMatch(jira="TES", request_type="Report a system problem")
    return base.model_copy(update={"scopes": [Scope(match=match, **overrides)]})


def test_sopguard_adopt_applies_the_scope_of_the_requests_type(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    """Only labelled requests of this type are adopted: the request type's scope says so."""
    request = _request(CLOUD)
    fake, sopguard = _start(tmp_path, no_network, CLOUD, request, "service_desk")
    fake.listed = [copy.deepcopy(request["issue"])]
    services = _services(sopguard)
    services.policy = sopguard.connector.policy = _scoped_by_request_type(
        adoption=Adoption(labels=["adopt-me"])
    )

    [found] = adopt(services, "TES", dry_run=True)

    assert found.verdict == "outside adoption"


def test_a_reconcile_reads_a_request_by_the_scope_of_its_type(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    """A status only the request type's scope maps is a change of state the reconcile makes up."""
    request = _request(CLOUD)
    fake, sopguard = _start(tmp_path, no_network, CLOUD, request, "service_desk")
    base = load_policy()
    jira = base.trackers.jira
    statuses = {**jira.statuses, "diagnosis": [*jira.statuses["diagnosis"], "Investigating"]}
    trackers = base.trackers.model_copy(update={"jira": jira.model_copy(update={"statuses": statuses})})
    sopguard.connector.policy = _scoped_by_request_type(trackers=trackers)
    issue = copy.deepcopy(request["issue"])
    issue["fields"]["status"] = {"name": "Investigating", "statusCategory": {"key": "indeterminate"}}
    issue["fields"]["updated"] = (MONDAY_10 + dt.timedelta(minutes=30)).isoformat()
    fake.search_reply = lambda _: (200, {}, json.dumps({"issues": [issue]}))
    known = KnownIssue(is_open=True, labels=frozenset(issue["fields"]["labels"]), state="triage")

    missed = sopguard.connector.missed(
        "TES", MONDAY_10, MONDAY_10 + dt.timedelta(hours=1), {}, lambda _: known
    )

    [update] = [d for d in missed if d.event_name == "jira:issue_updated"]
    assert {"field": "status", "fromString": None, "toString": "Investigating"} in update.payload[
        "changelog"
    ]["items"]


def test_a_request_type_cleared_on_the_request_is_no_longer_kept(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    request = _request(CLOUD)
    fake, sopguard = _start(tmp_path, no_network, CLOUD, request, "service_desk")
    sopguard.deliver(request, "created")
    ledger = _services(sopguard).store.ledger
    ref = IssueRef("jira", "TES", fake.key)
    cleared = copy.deepcopy(request)
    cleared.update(webhookEvent="jira:issue_updated", issue_event_type_name="issue_generic")
    cleared["issue"]["fields"]["customfield_10010"] = None  # the field there, and empty
    cleared["changelog"] = {
        "items": [{"field": "Customer Request Type", "fromString": "Report a system problem"}]
    }
    commented = fixture_json("jira", "mattermost__webhook-cloud-comment-created.json")  # shows no type
    commented["issue"]["fields"]["project"]["projectTypeKey"] = "service_desk"

    kept = ledger.one(ref)
    sopguard.deliver(cleared, "cleared")
    gone = ledger.one(ref)
    sopguard.deliver(commented, "commented")
    still_gone = ledger.one(ref)

    assert kept is not None and kept.context[events.REQUEST_TYPE] == "Report a system problem"
    assert gone is not None and events.REQUEST_TYPE not in gone.context
    assert still_gone is not None and events.REQUEST_TYPE not in still_gone.context


def _moved(project_type: str | None) -> dict[str, Any]:
    """A delivery of the request moved to another project, which shows no request type."""
    moved = copy.deepcopy(_request(CLOUD))
    moved.update(webhookEvent="jira:issue_updated", issue_event_type_name="issue_moved")
    fields = moved["issue"]["fields"]
    del fields["customfield_10010"]
    if project_type is None:
        del fields["project"]["projectTypeKey"]  # as Data Center's deliveries
    else:
        fields["project"]["projectTypeKey"] = project_type
    moved["changelog"] = {"items": [{"field": "Key", "fromString": "SUP-7", "toString": "TES-41"}]}
    return moved


@pytest.mark.parametrize("project_type", ["software", None, "service_desk"])
def test_a_request_moved_to_another_project_keeps_no_request_type_it_does_not_show(
    project_type: str | None,
) -> None:
    kept = {events.REQUEST_TYPE: "Report a system problem", events.REQUEST_TYPE_FIELD: "customfield_10010"}

    assert events.REQUEST_TYPE not in events.kept_context(kept, _moved(project_type))
    commented = fixture_json("jira", "mattermost__webhook-cloud-comment-created.json")
    commented["issue"]["fields"]["project"]["projectTypeKey"] = "service_desk"
    assert events.kept_context(kept, commented)[events.REQUEST_TYPE] == "Report a system problem"


def test_a_request_type_scopes_only_jira_projects() -> None:
    with pytest.raises(ValueError, match="`request_type` is a Jira Service Management one"):
        ScopeMatch.model_validate({"github": "acme/*", "request_type": "Get IT help"})
    match = ScopeMatch.model_validate({"jira": "TES", "request_type": "get it*"})

    assert match.matches("jira", "TES", "Get IT help") and not match.matches(
        "jira", "TES", "Report a problem"
    )
    assert not match.matches("jira", "TES")  # a request of no known type, or an issue that is not one


@pytest.mark.parametrize(
    ("name", "mark", "public"),
    [
        ("mattermost__webhook-cloud-comment-created.json", {"jsdPublic": False}, False),
        ("mattermost__webhook-cloud-comment-created.json", {"jsdPublic": True}, True),
        # A comment as Jira lists it with `expand=properties`: the property that made the note.
        ("mattermost__webhook-server-comment-created.json", {"properties": [INTERNAL]}, False),
        ("mattermost__webhook-server-comment-created.json", {"properties": []}, True),
    ],
    ids=["cloud-internal", "cloud-public", "listed-internal", "listed-public"],
)
def test_a_comment_says_whether_the_customer_reads_it(name: str, mark: dict[str, Any], public: bool) -> None:
    delivery = fixture_json("jira", name)
    delivery["comment"].update(mark)
    event, _ = events.to_event("c-1", delivery)

    assert event.comment is not None and event.comment.public is public


def test_a_data_center_comment_delivery_does_not_say_whether_the_customer_reads_it() -> None:
    """Data Center's comment deliveries (and search results) list no comment properties."""
    event, snapshot = events.to_event(
        "c-1", fixture_json("jira", "mattermost__webhook-server-comment-created.json")
    )

    assert event.comment is not None and event.comment.public is None
    assert not snapshot.is_public(event.comment)  # until the connector finds out


AGENT = {"name": "amy", "key": "JIRAUSER10200", "displayName": "Amy Agent"}


def _agents_comment(
    fake: FakeJira, request: dict[str, Any], comment_id: str, at: dt.datetime
) -> dict[str, Any]:
    """Data Center's delivery of an agent's comment on the request (`issue_commented`), the issue as
    Jira has it now: it shows the comment without its properties."""
    commented = copy.deepcopy(request)
    commented.pop("changelog", None)
    fields = commented["issue"]["fields"]
    fields["priority"], fields["labels"] = {"name": fake.priority}, list(fake.labels)
    commented.update(
        webhookEvent="jira:issue_updated",
        issue_event_type_name="issue_commented",
        user=AGENT,
        timestamp=int(at.timestamp() * 1000),
    )
    issue_id = commented["issue"]["id"]
    commented["comment"] = {
        "self": f"{DATA_CENTER.server}/rest/api/2/issue/{issue_id}/comment/{comment_id}",
        "id": comment_id,
        "author": AGENT,
        "body": "We are looking into it.",
        "created": at.isoformat(),
    }
    return commented


@pytest.mark.parametrize(
    ("properties", "breached"), [([INTERNAL], True), ([], False)], ids=["internal", "public"]
)
def test_on_data_center_an_agents_internal_note_is_no_first_response(
    tmp_path: Path, no_network: responses.RequestsMock, properties: list[Any], breached: bool
) -> None:
    request = _request(DATA_CENTER)
    fake, sopguard = _start(tmp_path, no_network, DATA_CENTER, request, "service_desk")
    fake.in_role("Service Desk Team", users=[AGENT["name"]])
    sopguard.deliver(request, "created")
    at = MONDAY_10 + dt.timedelta(minutes=5)
    fake.comments.append(
        {"id": "20001", "author": AGENT, "body": "We are looking into it.", "properties": properties}
    )

    no_network.calls.reset()
    sopguard.deliver(_agents_comment(fake, request, "20001", at), "commented")
    listed = fake.query("GET", f"/rest/api/2/issue/{fake.key}/comment")
    no_network.calls.reset()
    sopguard.deliver(_agents_comment(fake, request, "20001", at), "commented again")
    again = fake.calls()
    _sweep(sopguard, MONDAY_10 + dt.timedelta(minutes=15), no_network)

    assert [q.get("expand") for q in listed] == [["properties"]]
    assert f"GET /rest/api/2/issue/{fake.key}/comment" not in again  # remembered
    said = [_marker(c) for c in _ours(fake) if _marker(c).startswith("sla:first-response")]
    assert bool(said) is breached
