"""After the work: delay notices (S3.3) and the customer's rating after closure (S5.2)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from config import i18n
from config.i18n import marked
from config.schema import Command, Mode, Policy, Rule
from config.templates import Markdown
from policies import people
from policies.context import Context, Outcome, outcome
from policies.models import (
    Action,
    ChangeLabels,
    Comment,
    CommentPolicy,
    Event,
    EventKind,
    IssueSnapshot,
    PostComment,
)
from policies.render import render
from policies.router import Router
from policies.sla import DelayAnnounced, issue_clocks, rules_for
from policies.text import find_section

router = Router()

# Matched against the stripped reply, each run of blanks before a character it needs: three
# adjacent `\s*` made "5" followed by 2,000 spaces and a letter take 40 s (cubic).
LOW_RATING = 2  # a rating of 2 or less is followed up (S5.2)
_SCORE = re.compile(r"([1-5])(?:\s*/\s*5)?(?:\s*[.!])?")


# --- delay notices (S3.3) -----------------------------------------------------------------------

# A date in a delay section: 2026-12-20, 2026/12/20, 2026.12.20 or 2026年12月20日.
_DATE = re.compile(r"(?<!\d)(\d{4})(?:[-/.](\d{1,2})[-/.](\d{1,2})|年(\d{1,2})月(\d{1,2})日?)(?!\d)")
# Words that only introduce the date or the reason, before a colon (`New date:`, `原因：`).
_DATE_NAMES = (
    r"(?:new\s+(?:expected\s+)?date|expected(?:\s+date)?|date|新的?(?:预计)?(?:完成)?(?:时间|日期)|日期)"
)
_NAMES = rf"(?:{_DATE_NAMES}|reason|原因)"
_LABEL = re.compile(rf"(?<!\w){_NAMES}\s*[:：]\s*", re.IGNORECASE)
# What says that the date after it is the new one: a date's name with its colon (`Expected:`,
# `日期：`), or `new date` / `新的时间` without one.
_DATE_LABEL = re.compile(
    rf"(?:(?<!\w){_DATE_NAMES}\s*[:：]|(?<!\w)new\s+(?:expected\s+)?date|新的?(?:预计)?(?:完成)?(?:时间|日期)(?:为|是)?)\s*$",
    re.IGNORECASE,
)
# What leads into the date (`finish on 2026-12-20`, `new date 2026-12-20`, `延至2026年12月20日`).
_LEAD_IN_SPAN = 40
_LEAD_IN = re.compile(rf"(?:(?<!\w)(?:on|by|until|to|at|{_NAMES}\s*[:：]?)|于|至|到|为)\s*$", re.IGNORECASE)

INTERNAL, LATE, NO_DATE, PAST_DATE, NO_REASON = "internal", "late", "no-date", "past-date", "no-reason"


@dataclass(frozen=True)
class DelayNotice:
    """A delay notice as given (a `### Delay` section or `/delay`), and why it does not count.

    It counts (S3.3) only when the customer can read it (`INTERNAL`: a Jira internal note), it
    came before the resolution deadline (`LATE`), and it gives a new date (`NO_DATE`) later than
    the day it was given (`PAST_DATE`) and a reason (`NO_REASON`)."""

    new_date: dt.date | None
    reason: str
    problems: tuple[str, ...]
    deadline: dt.datetime | None = None

    @property
    def valid(self) -> bool:
        return not self.problems


def _date_in(text: str) -> tuple[dt.date | None, str]:
    """The new date written in `text`, and the text without it and the words that introduce it.

    The first date a label introduces ("new date:", "Expected:", "新的预计时间：") is the new date;
    without one, the latest date written: a date in the reason ("the part ordered on 2026-11-20")
    is before the new one."""
    found: list[tuple[dt.date, re.Match[str]]] = []
    for match in _DATE.finditer(text):
        year, month, day = (int(g) for g in match.groups() if g is not None)
        try:
            found.append((dt.date(year, month, day), match))
        except ValueError:
            continue
    if not found:
        return None, text
    labelled = [f for f in found if _DATE_LABEL.search(_lead_in(text, f[1]))]
    date, match = labelled[0] if labelled else max(found, key=lambda f: f[0])
    before = text[: match.start()]
    head, tail = before[:-_LEAD_IN_SPAN], before[-_LEAD_IN_SPAN:]
    return date, head + _LEAD_IN.sub("", tail) + " " + text[match.end() :]


def _lead_in(text: str, match: re.Match[str]) -> str:
    """The few characters before a date (bounded: no quadratic scan of a long section)."""
    return text[max(0, match.start() - _LEAD_IN_SPAN) : match.start()]


def _reason_in(text: str) -> str:
    """What is left once the labels are taken out: the reason, if it says anything."""
    rest = " ".join(_LABEL.sub(" ", text).split())
    rest = re.sub(r"\s*([，。；：、])\s*", r"\1", rest).strip(" .,;:，。；：-")
    return rest if re.search(r"\w", rest) else ""


def delay_section(policy: Policy, event: Event, comment: Comment) -> str:
    """The comment's delay section (`sla.delay_notice.headings`), empty without one."""
    rule = policy.sla.delay_notice
    return find_section(comment.body, rule.headings, event.source) if rule is not None else ""


def gives_notices(ctx: Context, comment: Comment) -> bool:
    """Whether the comment's author is one whose delay section is a notice (`sla.delay_notice.by`,
    the service team unless the policy says otherwise): a customer's "### Delay" is not the team's.
    An edit counts only as its author's own (the teams looked up are the editor's)."""
    rule = ctx.policy.sla.delay_notice
    if rule is None:
        return False
    if edited(ctx.event) and not people.same_person(
        comment.author, ctx.event.actor.login, ctx.event.actor.id
    ):
        return False
    return people.allowed(ctx, comment.author, rule.by, rule.not_by)


def section_notice(ctx: Context, comment: Comment) -> DelayNotice | None:
    """The comment's delay section read as a notice: its new date (`_date_in`), and the rest of
    the section (without the words that introduce the date) the reason; `None` without a section,
    or when its author gives no delay notices."""
    text = delay_section(ctx.policy, ctx.event, comment)
    if not text or not gives_notices(ctx, comment):
        return None
    date, rest = _date_in(text)
    return check_notice(ctx, comment, date, _reason_in(rest))


def given_at(ctx: Context, comment: Comment) -> dt.datetime:
    """When the comment's notice was given: when it was written, or for an edit the edit's time
    (a notice put right by an edit after the deadline is late)."""
    if edited(ctx.event):
        return ctx.event.at or ctx.now
    return comment.at or ctx.event.at or ctx.now


def announced(timeline: Sequence[object], comment: Comment) -> bool:
    """Whether the comment's delay notice is in the timeline already: one comment, one notice."""
    for entry in timeline:
        if not isinstance(entry, DelayAnnounced):
            continue
        if entry.comment_id and entry.comment_id == comment.id:
            return True
        if not entry.comment_id and entry.at == comment.at and entry.author == comment.author.login:
            return True  # recorded by an earlier release, which kept no comment id
    return False


def check_notice(ctx: Context, comment: Comment, date: dt.date | None, reason: str) -> DelayNotice:
    """Whether a notice with this date and reason, given in `comment`, counts (S3.3)."""
    at = given_at(ctx, comment)
    problems: list[str] = []
    if not ctx.snapshot.is_public(comment):
        problems.append(INTERNAL)
    deadline = _missed_deadline(ctx, at)
    if deadline is not None:
        problems.append(LATE)
    if date is None:
        problems.append(NO_DATE)
    elif date <= at.astimezone(_service_zone(ctx.policy)).date():
        problems.append(PAST_DATE)
    if not reason:
        problems.append(NO_REASON)
    return DelayNotice(date, reason, tuple(problems), deadline)


def _service_zone(policy: Policy) -> dt.tzinfo:
    """Where "a later day" is judged: the zone of the resolution target's calendar, where the team
    and the customer keep their days (not the comment's timestamp's zone, often UTC)."""
    zones = [t.calendar.zone for t in rules_for(policy.sla).targets if t.kind == "resolution"]
    return zones[0] if zones else dt.UTC


def _missed_deadline(ctx: Context, at: dt.datetime) -> dt.datetime | None:
    """The resolution deadline the issue had already missed at `at`, read from the ledger's
    timeline as the sweep reads it; `None` when none was missed (or no clock is known)."""
    clocks = issue_clocks(ctx.policy.sla, ctx.snapshot.timeline, at)
    missed = [c.deadline for c in clocks if c.kind == "resolution" and c.breached]
    return min(missed) if missed else None


def refuse_notice(ctx: Context, rule: Rule, notice: DelayNotice, comment: Comment) -> PostComment:
    """One comment that says why a delay notice does not count, once per comment; for a notice an
    edit put right, that answer brought up to date (it now counts), where there was one."""
    locale = ctx.policy.locale
    body = render(
        ctx.policy,
        "delay-refused",
        rule,
        actor=comment.author.login,
        problems=list(notice.problems),
        deadline=Markdown(i18n.instant(notice.deadline, locale)) if notice.deadline else Markdown(),
        new_date=Markdown(i18n.day(notice.new_date, locale)) if notice.new_date else Markdown(),
        command=rule.name if isinstance(rule, Command) else "",  # a command is not judged again on an edit
    )
    # An edit brings the answer up to date (the same marker): one that still does not count, or
    # one that put it right, which needs no answer where there was none.
    if notice.valid:
        again = CommentPolicy.UPDATE_ONLY
    else:
        again = CommentPolicy.UPSERT if edited(ctx.event) else CommentPolicy.ONCE
    marker = f"delay-refused:{comment.id or ctx.event.delivery_id}"
    return PostComment(rule.id, marker, body, on_existing=again, kind="delay-refused")


def edited(event: Event) -> bool:
    """An edit of a comment (GitHub `issue_comment.edited`, Jira `comment_updated`)."""
    return event.name.endswith(".edited") or event.name in ("comment_updated", "issue_comment_edited")


# Each problem as the audit log says it.
PROBLEM_TEXTS = {
    INTERNAL: marked("an internal note"),
    LATE: marked("after the resolution deadline"),
    NO_DATE: marked("no new date"),
    PAST_DATE: marked("the new date is not a later day"),
    NO_REASON: marked("no reason"),
}


def refusal_reason(ctx: Context, notice: DelayNotice) -> str:
    """The audit reason of a notice that does not count, in the policy's locale."""
    problems = [ctx.tell(PROBLEM_TEXTS[p]) for p in notice.problems]
    return ctx.tell(
        "delay notice does not count: %(problems)s", problems=i18n.listing(problems, ctx.policy.locale)
    )


def rating(policy: Policy, snapshot: IssueSnapshot, comment: Comment) -> int | None:
    """A score of 1-5 that the reporter replied on a closed issue (the satisfaction question)."""
    if policy.sla.satisfaction is None or snapshot.is_open:
        return None
    if not people.same_person(comment.author, snapshot.reporter, snapshot.reporter_id):
        return None
    match = _SCORE.fullmatch(comment.body.strip())
    return int(match.group(1)) if match else None


def ask_for_rating(ctx: Context) -> Iterator[Outcome]:
    """On a valid close: one comment asks the reporter to rate the service."""
    rule = ctx.policy.sla.satisfaction
    if rule is None or ctx.mode(rule) == Mode.OFF:
        return
    body = render(ctx.policy, "satisfaction", rule, reporter=ctx.snapshot.reporter)
    comment = PostComment(rule.id, f"satisfaction:{ctx.event.delivery_id}", body, kind="satisfaction")
    yield outcome(rule, ctx.mode(rule), passed=True, reasons=[ctx.tell("rating asked")], actions=[comment])


@router.register(EventKind.COMMENTED)
def record_follow_up(ctx: Context) -> Iterator[Outcome]:
    """Delay notices and ratings go to the ledger and the audit log; nothing is posted."""
    comment = ctx.event.comment
    if comment is None:
        return
    yield from _delay_notice(ctx, comment)
    score = rating(ctx.policy, ctx.snapshot, comment)
    satisfaction = ctx.policy.sla.satisfaction
    if score is not None and satisfaction is not None:
        mode = ctx.mode(satisfaction)
        low = score <= LOW_RATING and mode != Mode.OFF
        actions = _low_rating(ctx, satisfaction, score) if low else []
        yield outcome(
            satisfaction,
            mode,
            passed=not low,
            reasons=[ctx.tell("rated %(score)s of 5", score=score)],
            actions=actions,
        )


def _delay_notice(ctx: Context, comment: Comment) -> Iterator[Outcome]:
    """The comment's delay section judged (S3.3): counted, refused with why, or no notice at all
    (not its author's to give: not answered). An edit judges it again until it counts, once."""
    rule = ctx.policy.sla.delay_notice
    if (
        rule is None
        or ctx.mode(rule) == Mode.OFF
        or (edited(ctx.event) and announced(ctx.snapshot.timeline, comment))
    ):
        return
    notice = section_notice(ctx, comment)
    if notice is None:
        if delay_section(ctx.policy, ctx.event, comment):
            # Not answered: a refusal would tell a customer or a passer-by of a rule not theirs.
            reason = ctx.tell(
                "not a delay notice: %(login)s is not one who gives them (%(by)s)",
                login=comment.author.login,
                by=i18n.listing(people.shown(ctx, rule.by), ctx.policy.locale),
            )
            yield outcome(rule, ctx.mode(rule), passed=True, reasons=[reason])
    elif notice.valid:
        reason = ctx.tell(
            "delay announced by %(login)s: new date %(date)s",
            login=comment.author.login,
            date=notice.new_date.isoformat() if notice.new_date else "",
        )
        put_right = [refuse_notice(ctx, rule, notice, comment)] if edited(ctx.event) else []
        yield outcome(rule, ctx.mode(rule), passed=True, reasons=[reason], actions=put_right)
    else:
        refusal = refuse_notice(ctx, rule, notice, comment)
        yield outcome(
            rule, ctx.mode(rule), passed=False, reasons=[refusal_reason(ctx, notice)], actions=[refusal]
        )


def _low_rating(ctx: Context, rule: Rule, score: int) -> list[Action]:
    """S5.2: a poor rating is labelled and brought to the escalation contact."""
    sla = ctx.policy.sla
    escalation = Markdown(sla.escalation.get(ctx.event.source, ""))
    body = render(ctx.policy, "low-rating", rule, score=score, escalation=escalation)
    # By the rating's comment: Jira delivers a comment twice (`comment_created`, `issue_commented`).
    rated = ctx.event.comment.id if ctx.event.comment and ctx.event.comment.id else ctx.event.delivery_id
    comment = PostComment(rule.id, f"low-rating:{rated}", body, kind="low-rating")
    if ctx.mode(rule) != Mode.ENFORCE:
        return [comment]
    return [ChangeLabels(rule.id, add=frozenset({sla.low_rating_label})), comment]
