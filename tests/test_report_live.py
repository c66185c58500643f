"""The report of a seeded database (tests/report_support.py): its figures against the outcomes the
issues were built with, and GET /report: off unless a token is set, the token as bearer or basic
auth, filters as query parameters (bad ones a 400 that says why), the policy's locale."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from app import create_app
from config.loader import load_policy
from config.settings import Settings
from runtime.report_page import ReportQuery, gather
from runtime.store import Store
from tests.report_support import AS_OF, SINCE, UNTIL, Expected, Figures, seed

TOKEN = "s3cret-report-token"
PERIOD = f"since={SINCE}&until={UNTIL}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Expected]:
    data_dir = tmp_path_factory.mktemp("report")
    expected = seed(Store(f"sqlite:///{data_dir / 'sopguard.db'}"))
    return data_dir, expected


def _client(data_dir: Path, token: str = TOKEN, policy: Path | None = None) -> FlaskClient:
    settings = Settings(data_dir=data_dir, report_token=token, insecure_dev=True, policy=policy)
    return create_app(settings).test_client()


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _figure(page: str, name: str) -> str:
    found = re.search(rf'data-figure="{re.escape(name)}">([^<]*)<', page)
    assert found, f"no figure {name}"
    return found.group(1).strip()


def _met_of(counts: Figures, kind: str) -> str:
    clocks = counts.first_response if kind == "first-response" else counts.resolution
    decided = clocks["met"] + clocks["breached"]
    return f"{round(100 * clocks['met'] / decided)}% met ({clocks['met']} of {decided})"


def test_the_figures_are_those_the_issues_were_built_with(seeded: tuple[Path, Expected]) -> None:
    data_dir, expected = seeded
    policy = load_policy()

    report = gather(policy, Store(f"sqlite:///{data_dir / 'sopguard.db'}"), ReportQuery(SINCE, UNTIL), AS_OF)

    shown = {(row.scope, row.priority): row for row in report.rows}
    assert set(shown) == set(expected.groups)
    for key, figures in [*expected.groups.items(), (("", ""), expected.total)]:
        row = shown.get(key, report.total)
        first, resolution = row.targets["first-response"], row.targets["resolution"]
        assert (row.issues, row.rejections, row.reopens) == (
            figures.issues,
            figures.rejections,
            figures.reopens,
        )
        assert (row.cancellations, row.delay_notices) == (figures.cancellations, figures.delay_notices)
        assert (first.met, first.breached, first.running) == tuple(
            figures.first_response[k] for k in ("met", "breached", "running")
        )
        assert (resolution.met, resolution.breached, resolution.running) == tuple(
            figures.resolution[k] for k in ("met", "breached", "running")
        )
    assert {week: row.issues for week, row in report.weeks} == dict(expected.weeks)
    assert {str(b.ref) for b in report.breaches} == expected.breached_refs
    assert {r.rule_id: (r.blocked, r.warned) for r in report.rules} == expected.rules
    assert report.stages[0] == ("planning", 17) and report.guards[0].rule_id == "owner-assigned"


def test_the_page_is_off_unless_a_token_is_set(seeded: tuple[Path, Expected]) -> None:
    answer = _client(seeded[0], token="").get("/report", headers=_bearer())

    assert answer.status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic " + base64.b64encode(b"manager:wrong").decode()},
    ],
)
def test_the_page_needs_its_token(seeded: tuple[Path, Expected], headers: dict[str, str]) -> None:
    answer = _client(seeded[0]).get("/report", headers=headers)

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert "Service report" not in answer.get_data(as_text=True)


def test_the_token_opens_it_as_bearer_or_basic_auth(seeded: tuple[Path, Expected]) -> None:
    data_dir, expected = seeded
    client = _client(data_dir)
    basic = {"Authorization": "Basic " + base64.b64encode(f"manager:{TOKEN}".encode()).decode()}

    pages = [client.get(f"/report?{PERIOD}", headers=h) for h in (_bearer(), basic)]

    for answer in pages:
        assert answer.status_code == 200 and answer.mimetype == "text/html"
        assert answer.headers["Cache-Control"] == "no-store"
        page = answer.get_data(as_text=True)
        assert _figure(page, "issues.total") == str(expected.total.issues)
        assert _figure(page, "first-response.total") == _met_of(expected.total, "first-response")
        assert _figure(page, "resolution.total") == _met_of(expected.total, "resolution")
        assert _figure(page, "period") == "Oct 12, 2026 to Nov 8, 2026"
    assert client.post("/report", headers=_bearer()).status_code == 405


def test_filters_narrow_the_page_to_a_scope_and_priority(seeded: tuple[Path, Expected]) -> None:
    data_dir, expected = seeded
    figures = expected.groups[("jira:OPS", "P1")]

    page = (
        _client(data_dir)
        .get(f"/report?{PERIOD}&scope=jira:OPS&priority=P1", headers=_bearer())
        .get_data(as_text=True)
    )

    assert _figure(page, "issues.total") == str(figures.issues)
    assert _figure(page, "reopens.total") == str(figures.reopens)
    assert _figure(page, "rejections.total") == str(figures.rejections)
    assert "acme/desk (GitHub) · P" not in page
    assert '<option value="jira:OPS" selected>' in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=2026-13-01", "since: expected a date as YYYY-MM-DD, got '2026-13-01'"),
        ("until=yesterday", "until: expected a date as YYYY-MM-DD, got 'yesterday'"),
        ("until=9999-12-31", "until: 9999-12-31 is outside 1970-01-01 to 9999-12-30"),
        ("since=0001-01-01", "since: 0001-01-01 is outside 1970-01-01 to 9999-12-30"),
        ("since=2026-11-08&until=2026-10-12", "since (2026-11-08) is after until (2026-10-12)"),
        ("priority=P9", "priority: expected one of P1, P2, P3, P4, got 'P9'"),
        (
            "scope=gitlab:acme/desk",
            "scope: expected github:OWNER/NAME or jira:PROJECT, got 'gitlab:acme/desk'",
        ),
    ],
)
def test_a_bad_filter_is_a_400_that_says_why(seeded: tuple[Path, Expected], query: str, message: str) -> None:
    answer = _client(seeded[0]).get(f"/report?{query}", headers=_bearer())

    assert answer.status_code == 400
    assert answer.get_json() == {"error": message}


HALF_WIDTH_BETWEEN_CJK = re.compile(r"[\u4e00-\u9fff][,:;()!?][\u4e00-\u9fff]|[\u4e00-\u9fff][,:;!?] ")


def test_the_page_speaks_the_policys_locale(seeded: tuple[Path, Expected], tmp_path: Path) -> None:
    data_dir, expected = seeded
    default = Path(__file__).parents[1] / "config" / "sop.yaml"
    chinese = tmp_path / "sop.yaml"
    chinese.write_text(
        default.read_text(encoding="utf-8").replace("\nlocale: en", "\nlocale: zh-CN", 1), "utf-8"
    )

    page = (
        _client(data_dir, policy=chinese).get(f"/report?{PERIOD}", headers=_bearer()).get_data(as_text=True)
    )

    text = re.sub(r"<[^>]+>", " ", page.split("</style>", 1)[1])
    for clause in load_policy(chinese).sop_clauses.values():  # the policy's own text is the policy's
        text = text.replace(clause.get("zh-CN"), "")
    assert '<html lang="zh-CN">' in page and "服务报告" in page
    assert _figure(page, "period") == "2026年10月12日至2026年11月8日"
    total = expected.total.resolution
    decided = total["met"] + total["breached"]
    assert (
        _figure(page, "resolution.total")
        == f"达标{round(100 * total['met'] / decided)}%（{decided}个中{total['met']}个）"
    )
    assert "验收被拒" in page and "关闭后重开" in page and "计时中：" in page
    assert not HALF_WIDTH_BETWEEN_CJK.findall(text)
    assert not re.search(r"\d (hr|min)\b", text)


def test_a_scope_from_the_query_is_shown_escaped(seeded: tuple[Path, Expected]) -> None:
    scope = 'github:acme/"><img src=x onerror=alert(1)>'

    answer = _client(seeded[0]).get("/report", query_string={"scope": scope}, headers=_bearer())

    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_a_page_for_one_scope_speaks_that_scopes_locale(
    seeded: tuple[Path, Expected], tmp_path: Path
) -> None:
    default = Path(__file__).parents[1] / "config" / "sop.yaml"
    policy = tmp_path / "sop.yaml"
    policy.write_text(
        default.read_text(encoding="utf-8") + "\nscopes:\n  - match: {jira: OPS}\n    locale: zh-CN\n",
        "utf-8",
    )
    client = _client(seeded[0], policy=policy)

    chinese = client.get(f"/report?{PERIOD}&scope=jira:OPS", headers=_bearer()).get_data(as_text=True)
    english = client.get(f"/report?{PERIOD}&scope=github:acme/desk", headers=_bearer()).get_data(as_text=True)

    assert '<html lang="zh-CN">' in chinese and "服务报告" in chinese
    assert '<html lang="en">' in english and "Service report" in english


def test_the_ledger_is_read_a_page_at_a_time_and_every_issue_once(seeded: tuple[Path, Expected]) -> None:
    ledger = Store(f"sqlite:///{seeded[0] / 'sopguard.db'}").ledger

    paged = [issue.ref for issue in ledger.pages(size=64)]

    assert len(paged) == seeded[1].total.issues == len(set(paged))
    assert sorted(map(str, paged)) == sorted(str(i.ref) for i in ledger.followed(open_only=False))
