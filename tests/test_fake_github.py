"""The loopback fake GitHub, driven by PyGithub itself as our connector configures it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
from github import Auth, Github, GithubException
from github.Issue import Issue
from github.Requester import Requester
from openapi_core.testing import MockRequest, MockResponse
from prometheus_client import REGISTRY

from connector.base import MemoryJournal
from connector.delivery import Delivery
from connector.github.connector import GithubConnector
from policies.models import Action, ChangeLabels, CreateSubtasks, MoveToStatus, PostComment
from tests.conftest import fixture_json
from tests.fake_github import Call, FakeGithubServer, Fault, RandomFaults, parse_fault
from tests.openapi_check import _openapi

REPO = "octo/widgets"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def server(no_network: responses.RequestsMock) -> Iterator[FakeGithubServer]:
    with FakeGithubServer() as fake:
        no_network.add_passthru(fake.url)
        yield fake


def client(server: FakeGithubServer, per_page: int = 100) -> Github:
    """PyGithub as connector/github/connector.py configures it: no retries, no pauses, lazy objects."""
    return Github(
        auth=Auth.Token("t"),
        base_url=server.url,
        retry=None,
        lazy=True,
        per_page=per_page,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def issue_of(server: FakeGithubServer, number: int = 1, per_page: int = 100) -> Issue:
    return client(server, per_page).get_repo(REPO).get_issue(number)


def test_a_connector_session_changes_the_state_and_is_logged(server: FakeGithubServer) -> None:
    github = client(server)
    repository = github.get_repo(REPO)
    issue = repository.get_issue(7)

    assert github.get_user().login == "sopguard-bot"
    comment = issue.create_comment("first")
    comment.edit("first, edited")
    issue.add_to_labels("triage", "needs info")
    issue.remove_from_labels("needs info")
    child = repository.create_issue(title="Check the logs", body="item", labels=["checklist"])
    issue.add_sub_issue(child.id)
    issue.edit(state="closed")

    held = server.issue(REPO, 7)
    assert held.labels == ["triage"]
    assert held.state == "closed"
    assert [c.body for c in server.comments(REPO, 7)] == ["first, edited"]
    assert server.comments(REPO, 7)[0].user == "sopguard-bot"
    assert child.number == 8  # numbered after the highest issue the repository holds
    assert server.sub_issue_numbers(REPO, 7) == [8]
    assert server.issue(REPO, 8).labels == ["checklist"]
    assert [c.title for c in issue.get_sub_issues()] == ["Check the logs"]
    events = list(issue.get_events())
    assert [e.event for e in events] == ["labeled", "labeled", "unlabeled", "closed"]
    assert [e.label.name for e in events[:3]] == ["triage", "needs info", "needs info"]
    assert events[3].label is None  # completed from GET .../issues/events/{id}, as GitHub answers it
    assert [(c.method, c.path, c.status) for c in server.calls()][:8] == [
        ("GET", "/user", 200),
        ("POST", "/repos/octo/widgets/issues/7/comments", 201),
        ("PATCH", f"/repos/octo/widgets/issues/comments/{comment.id}", 200),
        ("POST", "/repos/octo/widgets/issues/7/labels", 200),
        ("DELETE", "/repos/octo/widgets/issues/7/labels/needs info", 200),
        ("POST", "/repos/octo/widgets/issues", 201),
        ("POST", "/repos/octo/widgets/issues/7/sub_issues", 201),
        ("PATCH", "/repos/octo/widgets/issues/7", 200),
    ]
    assert server.calls()[3].body == ["triage", "needs info"]  # PyGithub's bare array
    assert server.write_counts() == {
        "comment.create": 1,
        "comment.edit": 1,
        "labels.add": 1,
        "labels.remove": 1,
        "issue.create": 1,
        "sub_issue.add": 1,
        "issue.edit": 1,
    }
    assert all(
        c.monotonic <= later.monotonic for c, later in zip(server.calls(), server.calls()[1:], strict=False)
    )


def test_lazy_objects_fetch_neither_the_repository_nor_the_issue(server: FakeGithubServer) -> None:
    issue_of(server, 3).create_comment("hi")

    assert [c.kind for c in server.calls()] == ["comment.create"]


def test_comments_are_listed_across_pages(server: FakeGithubServer) -> None:
    for index in range(5):
        server.add_comment(REPO, 2, f"comment {index}", user="Codertocat")

    listed = list(issue_of(server, 2, per_page=2).get_comments())

    assert [c.body for c in listed] == [f"comment {i}" for i in range(5)]
    assert {c.user.login for c in listed} == {"Codertocat"}
    pages = server.calls("comments.list")
    assert [c.query.get("page", ["1"]) for c in pages] == [["1"], ["2"], ["3"]]
    assert 'rel="next"' in pages[0].response_headers["Link"]
    assert 'rel="next"' not in pages[2].response_headers["Link"]


def test_labels_set_as_documented_or_as_a_bare_array(server: FakeGithubServer) -> None:
    base = f"{server.url}/repos/{REPO}/issues/4/labels"
    requests.put(base, json={"labels": ["a", {"name": "b"}]}, timeout=5)
    requests.post(base, json=["c", "a"], timeout=5)
    missing = requests.delete(f"{base}/zzz", timeout=5)

    assert server.issue(REPO, 4).labels == ["a", "b", "c"]
    assert missing.status_code == 404
    assert [c.took_effect for c in server.writes()] == [True, True, False]
    assert server.write_counts(effective=True) == {"labels.set": 1, "labels.add": 1}


def test_issues_are_listed_by_state_labels_and_order(server: FakeGithubServer) -> None:
    server.put_issue(REPO, 1, labels=["bug"])
    server.put_issue(REPO, 2, labels=["bug", "p1"])
    server.put_issue(REPO, 3, labels=["bug"], state="closed")
    repository = client(server).get_repo(REPO)

    newest_first = repository.get_issues(state="open", labels=["bug"], sort="created", direction="desc")
    every_p1 = repository.get_issues(state="all", labels=["p1"])
    oldest_first = repository.get_issues(state="all", direction="asc")

    assert [i.number for i in newest_first] == [2, 1]
    assert [i.number for i in every_p1] == [2]
    assert [i.number for i in oldest_first] == [1, 2, 3]
    assert server.calls("issues.list")[0].query["labels"] == ["bug"]


def test_a_sub_issue_is_linked_once(server: FakeGithubServer) -> None:
    server.put_issue(REPO, 1, title="parent")
    repository = client(server).get_repo(REPO)
    child = repository.create_issue(title="item")
    parent = repository.get_issue(1)
    parent.add_sub_issue(child.id)

    with pytest.raises(GithubException) as again:
        parent.add_sub_issue(child.id)

    assert again.value.status == 422
    assert server.sub_issue_numbers(REPO, 1) == [child.number]
    server.put_issue(REPO, child.number, state="closed")
    parent.update()
    assert parent.raw_data["sub_issues_summary"] == {"total": 1, "completed": 1, "percent_completed": 100}


def test_a_scripted_streak_fails_one_write_six_times(server: FakeGithubServer) -> None:
    server.fail_next("POST", r"/issues/1/labels$", 500, 502, 503, 429, Fault(429), 403)
    issue = issue_of(server)
    answers = []
    for _ in range(6):
        with pytest.raises(GithubException) as failure:
            issue.add_to_labels("triage")
        headers = {k.lower(): v for k, v in (failure.value.headers or {}).items()}
        answers.append((failure.value.status, headers.get("retry-after")))
    issue.add_to_labels("triage")

    assert answers == [(500, None), (502, None), (503, None), (429, "1"), (429, None), (403, "1")]
    assert server.issue(REPO, 1).labels == ["triage"]
    assert [c.fault for c in server.calls()][-1] is None
    assert server.write_counts() == {"labels.add": 7}
    assert server.write_counts(effective=True) == {"labels.add": 1}


def test_a_fault_only_strikes_its_method_and_path(server: FakeGithubServer) -> None:
    server.fail_next("POST", r"/issues/2/comments$", 500)
    issue_of(server, 1).create_comment("elsewhere")
    list(issue_of(server, 2).get_comments())

    assert [c.status for c in server.calls()] == [201, 200]


def test_done_then_500_writes_and_the_client_sees_the_error(server: FakeGithubServer) -> None:
    server.fail_next("POST", r"/comments$", "done-then-500")

    with pytest.raises(GithubException) as failure:
        issue_of(server).create_comment("posted anyway")

    assert failure.value.status == 500
    assert [c.body for c in server.comments(REPO, 1)] == ["posted anyway"]
    (call,) = server.calls()
    assert (call.status, call.fault, call.took_effect) == (500, "done-then-500", True)


def test_done_then_drop_writes_and_the_connection_is_lost(server: FakeGithubServer) -> None:
    server.fail_next("PATCH", r"/issues/1$", "done-then-drop")

    with pytest.raises(requests.ConnectionError):
        issue_of(server).edit(state="closed")

    assert server.issue(REPO, 1).state == "closed"
    (call,) = server.calls()
    assert (call.status, call.fault, call.took_effect) == (None, "done-then-drop", True)


def test_a_drop_before_the_write_changes_nothing(server: FakeGithubServer) -> None:
    server.fail_next("*", r"/comments$", "drop")
    issue = issue_of(server)

    with pytest.raises(requests.ConnectionError):
        issue.create_comment("lost")
    issue.create_comment("kept")  # a new connection works

    assert [c.body for c in server.comments(REPO, 1)] == ["kept"]


def test_fault_shorthands() -> None:
    assert parse_fault(503, retry_after=1) == Fault(503)
    assert parse_fault(429, retry_after=7) == Fault(429, retry_after=7)
    assert parse_fault("done-then-502", retry_after=1) == Fault(502, after_write=True)
    assert parse_fault("done-then-drop", retry_after=1) == Fault(None, after_write=True)
    with pytest.raises(ValueError):
        parse_fault("sometimes", retry_after=1)


def random_run(faults: RandomFaults, no_network: responses.RequestsMock) -> list[Call]:
    with FakeGithubServer(faults=faults) as fake:
        no_network.add_passthru(fake.url)
        for index in range(80):
            with contextlib.suppress(requests.ConnectionError):  # a dropped connection
                requests.post(
                    f"{fake.url}/repos/{REPO}/issues/1/comments", json={"body": str(index)}, timeout=5
                )
        return fake.calls()


def test_random_faults_repeat_with_their_seed(no_network: responses.RequestsMock) -> None:
    faults = RandomFaults(rate=0.5, seed=3, after_write=0.5, drop=0.1)

    first, second = random_run(faults, no_network), random_run(faults, no_network)

    assert [c.fault for c in first] == [c.fault for c in second]
    assert {c.status for c in first} == {201, 500, 502, 503, 429, None}
    assert any(c.fault and c.fault.startswith("done-then-") and c.took_effect for c in first)
    assert any(c.fault and "retry-after=1" in c.fault for c in first)
    assert any(c.fault == "429" for c in first)


def test_random_faults_can_spare_reads(server: FakeGithubServer) -> None:
    server.set_random_faults(RandomFaults(rate=1.0, writes_only=True))

    list(issue_of(server).get_comments())
    with pytest.raises(GithubException):
        issue_of(server).create_comment("never")

    read, write = server.calls()
    assert (read.status, read.fault) == (200, None)
    assert write.fault is not None


def test_every_answer_carries_rate_limit_headers(server: FakeGithubServer) -> None:
    server.fail_next("GET", "/user", 502)
    first = requests.get(f"{server.url}/user", timeout=5)
    second = requests.get(f"{server.url}/nowhere", timeout=5)

    assert first.status_code == 502 and second.status_code == 404
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in (first, second)] == [4999, 4998]
    assert {r.headers["X-RateLimit-Limit"] for r in (first, second)} == {"5000"}
    assert server.calls()[1].kind == "unknown"


def test_concurrent_writers_all_land(server: FakeGithubServer) -> None:
    def post(worker: int) -> None:
        issue = issue_of(server)
        for index in range(10):
            issue.create_comment(f"{worker}-{index}")

    threads = [threading.Thread(target=post, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    comments = server.comments(REPO, 1)
    assert len(comments) == 40
    assert len({c.id for c in comments}) == 40


def test_wait_for_sees_requests_from_another_thread(server: FakeGithubServer) -> None:
    threading.Thread(target=lambda: issue_of(server).create_comment("later")).start()

    assert server.wait_for(lambda calls: any(c.kind == "comment.create" for c in calls))


def test_answers_match_githubs_openapi_description(server: FakeGithubServer) -> None:
    """Every answer of a session touching each endpoint is valid for GitHub's own description."""
    github = client(server, per_page=1)
    repository = github.get_repo(REPO)
    issue = repository.get_issue(1)
    _ = github.get_user().login
    issue.create_comment("one").edit("one, edited")
    issue.create_comment("two")
    issue.add_to_labels("a", "b")
    issue.set_labels("a", "c")
    issue.remove_from_labels("c")
    issue.edit(state="closed")
    child = repository.create_issue(title="item", labels=["a"])
    issue.add_sub_issue(child.id)
    list(issue.get_comments())
    list(issue.get_sub_issues())
    list(issue.get_events())
    list(repository.get_issues(state="all", labels=["a"]))

    openapi = _openapi("github-issues.openapi.json", server.url)
    problems = []
    for call in server.calls():
        request = MockRequest(
            server.url,
            call.method.lower(),
            call.path,
            args={k: v[0] for k, v in call.query.items()},
            data=json.dumps(call.body).encode() if call.body is not None else None,
        )
        response = MockResponse(
            json.dumps(call.response).encode(), status_code=call.status or 0, headers=call.response_headers
        )
        try:
            openapi.validate_response(request, response)
        except Exception as error:  # openapi-core raises a family of errors; report every one
            details = "; ".join(str(e) for e in getattr(error, "schema_errors", [])) or str(error)
            problems.append(f"{call.method} {call.path}: {details}")
    assert {c.kind for c in server.calls()} >= {"user.get", "events.list", "sub_issue.add", "issues.list"}
    assert not problems, "\n".join(problems)


def test_stop_hangs_up_on_kept_alive_connections(no_network: responses.RequestsMock) -> None:
    fake = FakeGithubServer().start()
    no_network.add_passthru(fake.url)
    issue = issue_of(fake)
    issue.create_comment("kept alive")  # PyGithub keeps the connection open

    fake.stop()

    with pytest.raises(requests.ConnectionError):
        issue.create_comment("after stop")


def test_it_runs_as_a_process_of_its_own(no_network: responses.RequestsMock) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_github", "--port", "0", "--login", "someone"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        no_network.add_passthru(url)
        login = requests.get(f"{url}/user", timeout=5).json()["login"]
        logged = requests.get(f"{url}/_fake/calls", timeout=5).json()
    finally:
        process.terminate()
    assert process.wait(timeout=10) == 0
    assert url.startswith("http://127.0.0.1:")
    assert login == "someone"
    assert [(c["method"], c["path"], c["status"]) for c in logged] == [("GET", "/user", 200)]


def _github_calls() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "sopguard_tracker_calls"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("tracker") == "github"
    )


def test_our_connector_keeps_its_connection_and_counts_every_request(server: FakeGithubServer) -> None:
    """Counting requests swaps PyGithub's connection classes, which would also make it open a new
    session and TCP connection per request: the connector keeps one connection, and counts."""
    connector = GithubConnector(auth=Auth.Token("t"), base_url=server.url, sleep=lambda _: None)
    delivery = Delivery("github", "d-1", "issues", fixture_json("github", "issues__labeled.json"))
    event, snapshot = delivery.normalize(connector.service_accounts(delivery))
    assert Requester._Requester__persist is True  # type: ignore[attr-defined]  # name-mangled `__persist`
    server.put_issue(event.issue.scope, int(event.issue.key), labels=sorted(snapshot.labels))
    counted, seen = _github_calls(), len(server.calls())
    actions: list[Action] = [ChangeLabels("r", add=frozenset({"triage"})), PostComment("r", "hi", "Hi.")]

    outcomes = [a.outcome for a in connector.apply(delivery, event, snapshot, actions, MemoryJournal())]

    assert outcomes == ["applied", "applied"]
    assert len(server.calls()) >= 3 and server.connections_accepted == 1
    assert _github_calls() - counted == len(server.calls()) - seen  # each request counted


def test_our_connector_acts_through_it_and_retries_its_faults(server: FakeGithubServer) -> None:
    """The calls connector/github/connector.py makes, against the fake, with a fault on each write."""
    slept: list[float] = []
    connector = GithubConnector(auth=Auth.Token("t"), base_url=server.url, sleep=slept.append)
    delivery = Delivery("github", "d-1", "issues", fixture_json("github", "issues__labeled.json"))
    event, snapshot = delivery.normalize(connector.service_accounts(delivery))
    repo, number = event.issue.scope, int(event.issue.key)
    server.put_issue(repo, number, labels=sorted(snapshot.labels))
    server.fail_next("POST", r"/labels$", 503)
    server.fail_next("POST", r"/comments$", "done-then-500")
    server.fail_next("POST", r"/sub_issues$", "done-then-drop")
    server.fail_next("PATCH", rf"/issues/{number}$", 429)
    actions: list[Action] = [
        ChangeLabels("r", add=frozenset({"triage"})),
        PostComment("r", "hello", "Hello."),
        CreateSubtasks("r", "intake", ("Check the logs",), frozenset({"checklist"})),
        MoveToStatus("r", "closed"),
    ]

    outcomes = [a.outcome for a in connector.apply(delivery, event, snapshot, actions, MemoryJournal())]

    # The comment's first try took effect, its answer lost: the retry found it instead of posting again.
    assert outcomes == ["applied", "applied", "applied (1 created)", "applied"]
    held = server.issue(repo, number)
    assert "triage" in held.labels and held.state == "closed"
    assert len(server.comments(repo, number)) == 1  # the retry found the comment the error hid
    assert [server.issue(repo, n).title for n in server.sub_issue_numbers(repo, number)] == ["Check the logs"]
    assert server.write_counts(effective=True)["issue.create"] == 1
    assert slept[-1] == 1.0  # the 429's Retry-After
