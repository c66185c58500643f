"""The deliveries a reconcile makes up for a Jira issue whose changes never arrived.

An issue as the search API returns it (`key`, `fields`) has the shape of a webhook's `issue`, so
each change is told as the delivery Jira would have sent (`connector.jira.events` reads it as it
reads a real one): `jira:issue_created`, `comment_created`, or one `jira:issue_updated` whose
changelog names every field that differs from the ledger (status, labels, priority). Who changed a
field is not on the issue: that delivery has no `user`. What status the ledger's SOP state was is
not kept, so a status item has no `fromString`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from config.schema import Policy
from connector.base import KnownIssue
from connector.delivery import Delivery
from policies.priority import jira_level
from policies.text import parse_time
from policies.workflow import jira_state

Json = dict[str, Any]


def _epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _name(value: object) -> str | None:
    return str(value.get("name")) if isinstance(value, dict) and value.get("name") else None


def missed_deliveries(
    policy: Policy,
    issue: Json,
    known: KnownIssue | None,
    since: dt.datetime,
    service_accounts: Collection[str] = (),
) -> list[Delivery]:
    """The deliveries of the changes the ledger does not have, in the order they are to run (as
    for GitHub: an opening first, then each unseen comment as of its time, then one update showing
    the issue as it is now). Nothing for an issue no longer followed, or one never seen that is
    older than `since`."""
    fields: Mapping[str, Any] = issue.get("fields") or {}
    created, updated = parse_time(fields.get("created")), parse_time(fields.get("updated"))
    if (known is not None and known.gone) or updated is None:
        return []
    if known is None and (created is None or created < since):
        return []
    name = f"jira:{issue['key']}"

    def made_up(event: str, change: str, at: dt.datetime, **extra: Any) -> Delivery:
        payload = {"webhookEvent": event, "timestamp": _epoch_ms(at), "issue": issue, **extra}
        return Delivery("jira", f"reconcile:{name}:{at.isoformat()}:{change}", event, payload)

    found: list[Delivery] = []
    if known is None:
        found.append(made_up("jira:issue_created", "created", updated, user=fields.get("reporter")))
    seen = known.comment_ids if known is not None else frozenset()
    for comment in (fields.get("comment") or {}).get("comments") or ():
        author = comment.get("author") or {}
        ours = any(
            str(author.get(k)) in service_accounts for k in ("accountId", "name", "key") if author.get(k)
        )
        at = parse_time(comment.get("created")) or updated
        if str(comment.get("id")) in seen or ours or at < since:
            continue
        found.append(made_up("comment_created", f"comment:{comment['id']}", at, comment=comment))
    if known is not None and (items := _changed_fields(policy, fields, known)):
        found.append(
            made_up(
                "jira:issue_updated",
                "updated",
                updated,
                issue_event_type_name="issue_generic",
                changelog={"items": items},
            )
        )
    return found


def _changed_fields(policy: Policy, fields: Mapping[str, Any], known: KnownIssue) -> list[Json]:
    items: list[Json] = []
    status = _name(fields.get("status"))
    if status is not None and jira_state(policy, status) not in (None, known.state):
        items.append({"field": "status", "fromString": None, "toString": status})
    labels = frozenset(str(label) for label in fields.get("labels") or ())
    if labels != known.labels:
        before, after = " ".join(sorted(known.labels)), " ".join(sorted(labels))
        items.append({"field": "labels", "fromString": before, "toString": after})
    priority = _name(fields.get("priority"))
    if priority is not None and (jira_level(policy, priority) or priority) != known.priority:
        items.append({"field": "priority", "fromString": known.priority, "toString": priority})
    return items
