"""The deliveries a reconcile makes up for a GitHub issue whose changes never arrived.

GitHub's REST issue object has the shape of a webhook's `issue`, so each change is told as the
`issues` or `issue_comment` delivery GitHub would have sent (`connector.github.events` reads it as
it reads a real one). Who made a label or state change is not on the issue: such a delivery has no
`sender`. A comment's author is known.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from connector.base import KnownIssue
from connector.delivery import Delivery

Json = dict[str, Any]


def _labels(issue: Mapping[str, Any]) -> set[str]:
    return {str(label["name"]) for label in issue.get("labels") or () if isinstance(label, dict)}


def _parse(value: object) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def missed_deliveries(
    repository: str,
    issue: Json,
    comments: Sequence[Json],
    known: KnownIssue | None,
    since: dt.datetime,
    context: Mapping[str, Any],
    service_logins: Collection[str] = (),
) -> list[Delivery]:
    """The deliveries of the changes the ledger does not have, in the order they are to run.

    An issue it never saw (created since `since`) is opened first, showing the issue as it is now.
    Each comment (not ours) it has no record of comes as GitHub sent it, the issue updated when the
    comment was made: older than what the ledger then knows, it is kept for the clocks as a late
    delivery is, and replaces no newer state. A known issue's change of state, else of a label,
    comes last, as one delivery showing the issue as it is now, so that what it leaves in the ledger
    is the present (several deliveries of one present would each undo the previous one's effect).
    Nothing for an issue no longer followed, or one never seen that is older than `since`."""
    if known is not None and known.gone:
        return []
    created = _parse(issue.get("created_at"))
    if known is None and (created is None or created < since):
        return []
    name = f"github:{repository}#{issue['number']}"
    updated = str(issue.get("updated_at") or "")

    def made_up(event: str, action: str, change: str, at: str = updated, **extra: Any) -> Delivery:
        shown = {**issue, "updated_at": at}
        payload = {
            "action": action,
            "issue": shown,
            "repository": {"full_name": repository},
            **context,
            **extra,
        }
        return Delivery("github", f"reconcile:{name}:{at}:{change}", event, payload)

    found: list[Delivery] = []
    if known is None:
        found.append(made_up("issues", "opened", "opened", sender=issue.get("user")))
    seen = known.comment_ids if known is not None else frozenset()
    for comment in comments:
        author = comment.get("user") or {}
        if str(comment.get("id")) in seen or author.get("login") in service_logins:
            continue
        at = str(comment.get("created_at") or updated)
        found.append(
            made_up(
                "issue_comment", "created", f"comment:{comment['id']}", at, comment=comment, sender=author
            )
        )
    if known is not None:
        found.extend(_issue_change(issue, known, made_up))
    return found


def _issue_change(issue: Json, known: KnownIssue, made_up: Callable[..., Delivery]) -> list[Delivery]:
    is_open = issue.get("state") == "open"
    if is_open != known.is_open:
        action = "reopened" if is_open else "closed"
        return [made_up("issues", action, action)]
    labels = _labels(issue)
    added, removed = sorted(labels - known.labels), sorted(known.labels - labels)
    if added:
        return [made_up("issues", "labeled", f"labeled:{added[0]}", label={"name": added[0]})]
    if removed:
        return [made_up("issues", "unlabeled", f"unlabeled:{removed[0]}", label={"name": removed[0]})]
    return []
