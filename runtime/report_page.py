"""The report a manager opens (P4, S5.3): read from the ledger and the audit log, rendered as HTML
(a Jinja2 template with CSS bars), Markdown or CSV, in the policy's locale: words from `WORDS`,
numbers, percentages, hours and dates through Babel.

`sopguard report` writes it; `GET /report` (webhooks/report.py) serves it for the current data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import yaml
from babel import Locale as BabelLocale
from babel.dates import format_date, format_skeleton
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit
from jinja2 import Environment, PackageLoader, select_autoescape

from config.schema import Locale, Policy
from config.settings import Settings
from policies.models import IssueRef
from policies.report import Breach, IssueClocks, Report, Row, RuleCount, Target, summarize
from policies.sla import Created, TimelineEvent, read_all_cycles, rules_for
from policies.workflow import skipped_states
from runtime.store import Store

DEFAULT_DAYS = 28
BREACHES_LISTED = 30

WORDS: dict[str, dict[str, str]] = yaml.safe_load(
    resources.files("runtime").joinpath("templates/report.yaml").read_text(encoding="utf-8")
)
TRACKER_NAMES = {"github": "GitHub", "jira": "Jira"}


# The days a period may name: every instant of them, and of the day after, is a valid datetime.
FIRST_DAY = dt.date(1970, 1, 1)
LAST_DAY = dt.date(9999, 12, 30)


class BadQuery(ValueError):
    """A filter of the report that cannot be used; the message says why."""


@dataclass(frozen=True)
class ReportQuery:
    """The period (both days included, UTC) and the optional scope (`github:owner/name`,
    `jira:KEY`) and priority level the report is for."""

    since: dt.date
    until: dt.date
    scope: str | None = None
    priority: str | None = None

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.since, dt.time.min, dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """The first instant after the period."""
        return dt.datetime.combine(self.until + dt.timedelta(days=1), dt.time.min, dt.UTC)

    def policy(self, policy: Policy) -> Policy:
        """The policy the page speaks and counts by: the scope's, when it is for one scope."""
        return policy.for_issue(*self.scope.split(":", 1)) if self.scope else policy


def _day(name: str, value: str) -> dt.date:
    try:
        if len(value) != 10:
            raise ValueError(value)
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{name}: expected a date as YYYY-MM-DD, got {value!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadQuery(f"{name}: {value} is outside {FIRST_DAY} to {LAST_DAY}")
    return day


def parse_query(args: Mapping[str, str], policy: Policy, today: dt.date) -> ReportQuery:
    """The query from the page's parameters (or the command's options): `since` and `until` default
    to the last four weeks up to today; an unknown priority, a scope that names no tracker or a
    period that ends before it starts is refused."""
    until = _day("until", args["until"]) if args.get("until") else today
    since = _day("since", args["since"]) if args.get("since") else until - dt.timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise BadQuery(f"since ({since}) is after until ({until})")
    scope = args.get("scope") or None
    if scope is not None:
        tracker, _, name = scope.partition(":")
        if tracker not in TRACKER_NAMES or not name:
            raise BadQuery(f"scope: expected github:OWNER/NAME or jira:PROJECT, got {scope!r}")
    priority = args.get("priority") or None
    if priority is not None and priority not in policy.priority.levels:
        levels = ", ".join(policy.priority.levels)
        raise BadQuery(f"priority: expected one of {levels}, got {priority!r}")
    return ReportQuery(since, until, scope, priority)


# --- gathering ------------------------------------------------------------------------------


def _created(timeline: Sequence[TimelineEvent]) -> dt.datetime | None:
    instants = [e.at.astimezone(dt.UTC) for e in timeline if isinstance(e, Created)]
    return min(instants, default=None)


def gather(policy: Policy, store: Store, query: ReportQuery, now: dt.datetime) -> Report:
    """The report of the issues opened in the period, their clocks read at its end (or now)."""
    as_of = min(now, query.end)
    items: list[IssueClocks] = []
    chosen: set[str] = set()
    for issue in store.ledger.pages():
        ref, created = issue.ref, _created(issue.timeline)
        if created is None or (query.scope and f"{ref.source}:{ref.scope}" != query.scope):
            continue
        rules = rules_for(policy.for_issue(ref.source, ref.scope).sla)
        item = IssueClocks(ref, created, issue.timeline, read_all_cycles(rules, issue.timeline, as_of))
        if query.priority and item.level != query.priority:
            continue
        chosen.add(str(ref))
        if query.start <= created < as_of:
            items.append(item)
    filtered = bool(query.scope or query.priority)
    audit_rows = [
        row for row in store.audit.between(query.start, as_of) if not filtered or row.issue in chosen
    ]
    guards = frozenset(g.id for t in policy.workflow.transitions for g in t.guards)
    closed = frozenset(policy.trackers.github.closed_states)
    return summarize(
        items,
        audit_rows,
        since=query.since,
        until=query.until,
        as_of=as_of,
        target_ids=[t.id for t in policy.sla.targets],
        closed_states=closed,
        guard_ids=guards,
        cancel_ids=frozenset(c.id for c in policy.commands if c.to in closed),
        skipped_states=lambda before, after: skipped_states(policy, before, after),
    )


def issue_link(ref: IssueRef, settings: Settings) -> str:
    """The issue's page on its tracker ("" where the tracker's address is not configured)."""
    if ref.source == "github":
        api = settings.github_api_url.rstrip("/")
        web = "https://github.com" if api == "https://api.github.com" else api.removesuffix("/api/v3")
        return f"{web}/{ref.scope}/issues/{ref.key}"
    return f"{settings.jira_url.rstrip('/')}/browse/{ref.key}" if settings.jira_url else ""


# --- formatting -----------------------------------------------------------------------------


class Formats:
    """Numbers, shares, working hours and dates in one locale, through Babel."""

    def __init__(self, locale: Locale) -> None:
        self.locale = BabelLocale.parse(locale, sep="-")
        self.tag, self.none = locale, WORDS[locale]["no_value"]

    def number(self, value: float) -> str:
        return format_decimal(value, format="#,##0.#", locale=self.locale)

    def share(self, value: float | None) -> str:
        return self.none if value is None else format_percent(value, format="#,##0%", locale=self.locale)

    def hours(self, value: float | None) -> str:
        if value is None:
            return self.none
        return format_unit(value, "duration-hour", length="short", format="#,##0.0", locale=self.locale)

    def times(self, count: int) -> str:
        """ "3 times", in the locale's plural form."""
        return WORDS[self.tag][f"times_{self.locale.plural_form(count)}"].format(n=self.number(count))

    def date(self, day: dt.date | dt.datetime) -> str:
        return format_date(day, format="medium", locale=self.locale)

    def short_date(self, day: dt.date) -> str:
        return format_skeleton("MMMd", day, locale=self.locale)


def _target_titles(policy: Policy, locale: Locale) -> dict[str, str]:
    titles = {}
    for target in policy.sla.targets:
        title = target.title.get(locale) if target.title else target.id
        titles[target.id] = title[:1].upper() + title[1:]
    return titles


def rule_titles(policy: Policy, locale: Locale) -> dict[str, str]:
    """A rule's name in words: a guard's requirement, a transition's move, else its clause's text."""
    words = WORDS[locale]
    titles = {policy.workflow.rule.id: words["lifecycle"]}
    for transition in policy.workflow.transitions:
        state = policy.workflow.state(transition.to)
        titles[transition.id] = words["move_to"].format(
            state=state.title.get(locale) if state else transition.to
        )
        titles |= {guard.id: guard.requirement.get(locale) for guard in transition.guards}
    return titles


@dataclass(frozen=True)
class Segment:
    kind: str  # met, breached, running
    count: int
    width: float  # percent of the bar


def segments(target: Target) -> list[Segment]:
    total = target.clocks or 1
    parts = [("met", target.met), ("breached", target.breached), ("running", target.running)]
    return [Segment(kind, count, 100 * count / total) for kind, count in parts if count]


class _View:
    """What the templates show, formatted: the report, its words and its formats."""

    def __init__(
        self, report: Report, policy: Policy, locale: Locale, link: Callable[[IssueRef], str]
    ) -> None:
        self.report, self.policy, self.locale, self.link = report, policy, locale, link
        self.t, self.f = WORDS[locale], Formats(locale)
        self.targets = _target_titles(policy, locale)
        self.rules = rule_titles(policy, locale)

    def scope_name(self, scope: str) -> str:
        if not scope:
            return self.t["total"]
        tracker, _, name = scope.partition(":")
        return self.t["scope_name"].format(scope=name, tracker=TRACKER_NAMES.get(tracker, tracker))

    def met_count(self, target: Target) -> str:
        if not target.decided:
            return ""
        return self.t["met_count"].format(
            met=self.f.number(target.met), decided=self.f.number(target.decided)
        )

    def met_of(self, target: Target) -> str:
        if not target.decided:
            return self.t["no_value"]
        return self.t["met_of"].format(
            share=self.f.share(target.share_met()),
            met=self.f.number(target.met),
            decided=self.f.number(target.decided),
        )

    def rule_name(self, rule: RuleCount) -> str:
        return self.rules.get(rule.rule_id) or self.policy.clause(rule.sop) or rule.rule_id

    def clause(self, sop: str) -> str:
        text = self.policy.sop_clauses.get(sop)
        return f"{sop} {text.get(self.locale)}" if text else sop

    def stage_name(self, state_id: str) -> str:
        state = self.policy.workflow.state(state_id)
        return state.title.get(self.locale) if state else state_id

    def stage_clause(self, state_id: str) -> str:
        state = self.policy.workflow.state(state_id)
        return self.clause(state.sop) if state else ""

    def rating(self, row: Row) -> str:
        average = row.average_rating()
        return (
            self.t["no_value"]
            if average is None
            else format_decimal(average, format="0.0", locale=self.f.locale)
        )

    def breaches(self) -> list[Breach]:
        return self.report.breaches[:BREACHES_LISTED]

    def most(self) -> int:
        return max((r.total for r in self.report.rules), default=1)

    def count_axis(self) -> list[str]:
        """Whole numbers from 0 to the longest bar of the violations chart."""
        most = self.most()
        return [self.f.number(n) for n in sorted({0, most // 2, most})]


_ENVIRONMENT = Environment(
    loader=PackageLoader("runtime", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def as_html(
    report: Report,
    policy: Policy,
    locale: Locale,
    link: Callable[[IssueRef], str],
    *,
    query: ReportQuery | None = None,
    scopes: Sequence[str] = (),
) -> str:
    """The page; with `query`, the filters form of the live page (GET /report) too."""
    view = _View(report, policy, locale, link)
    return _ENVIRONMENT.get_template("report.html").render(
        v=view,
        r=report,
        t=view.t,
        f=view.f,
        query=query,
        scopes=scopes,
        levels=policy.priority.levels,
        segments=segments,
        lang=locale,
    )


def _figures(view: _View) -> Iterator[list[str]]:
    """The figures table: a header of words, then a row per scope and priority, then the total."""
    t, f, ids = view.t, view.f, view.report.target_ids
    head = [t["scope"], t["priority"], t["issues"]]
    for target_id in ids:
        name = view.targets[target_id]
        head += [t["column"].format(target=name, what=t[what]) for what in ("met_share", "median", "p90")]
    yield [*head, t["rejections"], t["reopens"], t["cancellations"], t["delay_notices"], t["rating"]]
    for row in [*view.report.rows, view.report.total]:
        cells = [view.scope_name(row.scope), row.priority, f.number(row.issues)]
        for target_id in ids:
            target = row.targets[target_id]
            cells += [view.met_of(target), f.hours(target.median()), f.hours(target.p90())]
        counts = (row.rejections, row.reopens, row.cancellations, row.delay_notices)
        yield [*cells, *(f.number(n) for n in counts), view.rating(row)]


def as_markdown(report: Report, policy: Policy, locale: Locale, link: Callable[[IssueRef], str]) -> str:
    view = _View(report, policy, locale, link)
    t, f = view.t, view.f
    period = t["period"].format(since=f.date(report.since), until=f.date(report.until))
    head, *rows = list(_figures(view))
    lines = [f"# {t['heading'].format(title=t['title'], period=period)}", ""]
    lines += [t["as_of"].format(date=f.date(report.as_of)), ""]
    if not report.rows:
        lines += [t["no_issues"], ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    lines += ["", t["hours_note"], t["running_explained"], "", f"## {t['breaches']}", ""]
    for breach in view.breaches():
        late = t["late_line"].format(
            target=view.targets[breach.target_id], late=f.hours(breach.late_by_hours)
        )
        lines.append(f"- [{breach.ref}]({link(breach.ref)}) {late}")
    lines += ["", f"## {t['skipped']}", ""]
    rules = [
        t["rule_line"].format(
            rule=view.rule_name(r), clause=view.clause(r.sop), blocked=r.blocked, warned=r.warned
        )
        for r in report.rules
    ]
    lines += [f"- {line}" for line in rules] or [t["none"]]
    return "\n".join(lines) + "\n"


def _csv_rows(view: _View) -> Iterator[list[str | int | float]]:
    """Raw numbers, for a spreadsheet: counts, shares as fractions, hours; headers in words."""
    t, ids = view.t, view.report.target_ids
    head: list[str | int | float] = [t["scope"], t["priority"], t["issues"]]
    for target_id in ids:
        name = view.targets[target_id]
        kinds = ("met", "breached", "running", "met_share", "median", "p90")
        head += [t["column"].format(target=name, what=t[kind]) for kind in kinds]
    yield [*head, t["rejections"], t["reopens"], t["cancellations"], t["delay_notices"], t["rating"]]
    for row in [*view.report.rows, view.report.total]:
        cells: list[str | int | float] = [row.scope or t["total"], row.priority, row.issues]
        for target_id in ids:
            target = row.targets[target_id]
            figures = (target.share_met(), target.median(), target.p90())
            cells += [target.met, target.breached, target.running]
            cells += ["" if value is None else round(value, 3) for value in figures]
        average = row.average_rating()
        counts = [row.rejections, row.reopens, row.cancellations, row.delay_notices]
        yield [*cells, *counts, "" if average is None else f"{average:.1f}"]


def as_csv(report: Report, policy: Policy, locale: Locale, link: Callable[[IssueRef], str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(_csv_rows(_View(report, policy, locale, link)))
    return out.getvalue()


RENDERERS: dict[str, Callable[..., str]] = {"html": as_html, "md": as_markdown, "csv": as_csv}
