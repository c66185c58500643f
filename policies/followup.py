"""After the work: delay notices (S3.3) and the customer's rating after closure (S5.2)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from config.schema import Mode, Policy, Rule
from config.templates import Markdown
from policies import people
from policies.context import Context, Outcome, outcome
from policies.models import Action, ChangeLabels, Comment, EventKind, IssueSnapshot, PostComment, Source
from policies.render import render
from policies.router import Router
from policies.text import find_section

router = Router()

# Matched against the stripped reply, each run of blanks before a character it needs: three
# adjacent `\s*` made "5" followed by 2,000 spaces and a letter take 40 s (cubic).
LOW_RATING = 2  # a rating of 2 or less is followed up (S5.2)
_SCORE = re.compile(r"([1-5])(?:\s*/\s*5)?(?:\s*[.!])?")


def announces_delay(policy: Policy, comment: Comment, markup: Source) -> bool:
    """Whether the comment, written in `markup` (the tracker's), has a delay section."""
    notice = policy.sla.delay_notice
    return notice is not None and bool(find_section(comment.body, notice.headings, markup))


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
    notice = ctx.policy.sla.delay_notice
    if notice is not None and announces_delay(ctx.policy, comment, ctx.event.source):
        yield outcome(
            notice,
            ctx.mode(notice),
            passed=True,
            reasons=[ctx.tell("delay announced by %(login)s", login=comment.author.login)],
        )
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
