"""The policy engine: `evaluate(policy, event, snapshot, now) -> Decision`. Pure: no I/O, no clock."""

from __future__ import annotations

import datetime as dt

from config.i18n import marked, say
from config.schema import Policy
from policies import (
    adoption,
    commands,
    followup,
    intake,
    people,
    plan_changes,
    priority,
    receipt,
    workflow,
)
from policies.context import Context, is_service_request
from policies.models import Action, ChangeLabels, Decision, Event, IssueSnapshot
from policies.render import contained
from policies.router import Router
from policies.visibility import with_visibility

ROUTER = Router(
    intake.router,
    priority.router,
    receipt.router,
    people.router,
    commands.router,
    plan_changes.router,
    workflow.router,
    followup.router,
)


# The note of a delivery about the service's own change (replay learns the service's logins from it).
SELF_CAUSED = marked("caused by this service itself; nothing to do")


def _merge_label_changes(actions: list[Action]) -> list[Action]:
    """Fold every label change into one, in the place of the first, so a connector needs one call."""
    changes = [a for a in actions if isinstance(a, ChangeLabels)]
    if len(changes) < 2:
        return actions
    add: set[str] = set()
    remove: set[str] = set()
    for change in changes:
        add = (add - change.remove) | change.add
        remove = (remove - change.add) | change.remove
    merged = ChangeLabels(
        "+".join(dict.fromkeys(c.rule_id for c in changes)), frozenset(add), frozenset(remove)
    )
    first = actions.index(changes[0])
    rest = [a for a in actions if not isinstance(a, ChangeLabels)]
    return [*rest[:first], merged, *rest[first:]]


def evaluate(policy: Policy, event: Event, snapshot: IssueSnapshot, now: dt.datetime) -> Decision:
    """Decide what the SOP asks for after `event`; `now` is the time of the decision."""
    scoped = policy.for_issue(event.source, event.issue.scope, snapshot.request_type)
    if event.by_service:
        return Decision(note=say(scoped.locale, SELF_CAUSED))
    if not is_service_request(scoped, snapshot):
        return Decision(
            note=say(
                scoped.locale, "a checklist item or sub-task, not a service request; its parent is checked"
            )
        )
    context = Context(scoped, event, snapshot, now)
    if snapshot.first_seen:
        inside, why = adoption.covers(scoped, event.source, snapshot)
        if not inside:
            return Decision(note=say(scoped.locale, "outside adoption (%(why)s): not touched", why=why))
        if adoption.is_adoption(context):
            return adoption.adopt(context)
    outcomes = [o for handler in ROUTER.handlers(event.kinds) for o in contained(handler(context))]
    if not outcomes:
        kinds = ", ".join(sorted(event.kinds))
        return Decision(note=say(scoped.locale, "no rule applies to %(kinds)s", kinds=kinds))
    actions = with_visibility(
        scoped, event, snapshot, _merge_label_changes([a for o in outcomes for a in o.actions])
    )
    return Decision(actions=tuple(actions), results=tuple(o.result for o in outcomes))
