"""Who reads each comment: the customer too (public) or only the team (internal).

Only Jira Service Management keeps internal notes; the Jira connector posts a comment that is not
public as one there, and every other tracker and project shows every comment to everyone. Which
comment is which lives in the policy (`trackers.jira.service_desk.comments`), by the kind of comment
or by the rule that posts it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from config.schema import TEAM_MEMBERS, Policy
from policies import people
from policies.models import Action, Event, IssueSnapshot, PostComment


def is_public(policy: Policy, comment: PostComment, *, to_customer: bool = False) -> bool:
    """Whether the customer reads `comment`. The answer to a command a customer gave is always
    public: an internal note would answer them where they cannot read it."""
    if comment.kind == "command-answer" and to_customer:
        return True
    return policy.trackers.jira.service_desk.visibility(comment.kind, comment.rule_id) == "public"


# The kind of comment a marker's first part names, for a comment kept by a release whose comments
# had no kind (an unfinished write in the ledger).
_KIND_OF_MARKER = {
    "receipt": "receipt",
    "satisfaction": "satisfaction",
    "low-rating": "low-rating",
    "checklist": "checklist-created",
    "transition-rejected": "transition-rejected",
    "not-undone": "transition-rejected",
    "label-refused": "label-refused",
    "plan-changed": "plan-changed",
    "priority-set": "priority-set",
    "priority-override": "priority-override",
    "status-unmapped": "status-unmapped",
    "command": "command-answer",
}


def kind_of_marker(rule_id: str, marker: str) -> str:
    """The kind of a comment that was kept without one, told by its marker: the intake reminder's
    marker is its rule's id, an SLA notice's `sla:<target>:<cycle>:<threshold>` (1: the breach)."""
    if marker == rule_id:
        return "intake-missing"
    first = marker.split(":", 1)[0]
    if first == "sla":
        return "sla-breached" if marker.rsplit(":", 1)[-1] == "1" else "sla-warning"
    return _KIND_OF_MARKER.get(first, "")


def given_by_a_customer(event: Event, snapshot: IssueSnapshot) -> bool:
    """Whether the event (a comment's command) is a customer's: the reporter's, or anyone's who is
    not of `team-members` (a request participant, a colleague of the customer's organization), as
    the connector looked them up (`commands.teams_to_look_up` asks for it on Jira)."""
    person = people.subject(event)
    reporter = people.same_person(person, snapshot.reporter, snapshot.reporter_id)
    return reporter or TEAM_MEMBERS not in snapshot.actor_teams


def with_visibility(
    policy: Policy, event: Event, snapshot: IssueSnapshot, actions: Iterable[Action]
) -> list[Action]:
    """The actions with each comment marked public or internal as the policy says."""
    to_customer = given_by_a_customer(event, snapshot)
    return [
        replace(action, public=is_public(policy, action, to_customer=to_customer))
        if isinstance(action, PostComment)
        else action
        for action in actions
    ]
