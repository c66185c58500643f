"""Which comments sopguard has posted on a Jira issue, so that none is posted twice.

Jira comments cannot carry hidden text the way a GitHub comment carries an HTML comment, so each
comment carries its marker (and the digest of the Markdown it was rendered from) as the comment
property `sopguard`: that is how a post whose answer was lost is found again. Which marker produced
which comment is kept in the service's own journal (`comment:<marker>`), so judging a comment costs
no request. Releases before the journal kept that map in the issue property `sopguard`; it is read
(never written any more) for the issues they acted on.

Jira comments are never edited (the documented v3 subset we check requests against has no comment
edit, and an edited comment rewrites the issue's history): where GitHub would edit (`UPSERT`,
`UPDATE_ONLY`), a changed text is posted once as a follow-up and the journal points at it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.models import CommentPolicy

PROPERTY = "sopguard"  # the issue property, and the comment property holding a comment's marker


@dataclass(frozen=True)
class Posted:
    comment_id: str
    digest: str


def digest(markdown: str) -> str:
    return hashlib.sha256(markdown.encode()).hexdigest()[:16]


def decode(value: Any) -> dict[str, Posted]:
    """The markers recorded in the property's value; anything unreadable counts as absent."""
    comments = value.get("comments") if isinstance(value, dict) else None
    if not isinstance(comments, dict):
        return {}
    return {
        str(marker): Posted(str(entry["id"]), str(entry.get("digest", "")))
        for marker, entry in comments.items()
        if isinstance(entry, dict) and "id" in entry
    }


def skip_reason(on_existing: CommentPolicy, earlier: Posted | None, body_digest: str) -> str | None:
    """Why the comment is not posted, or `None` to post it (first time, or a changed text)."""
    if earlier is None:
        return "skipped: no earlier comment to update" if on_existing == CommentPolicy.UPDATE_ONLY else None
    if on_existing == CommentPolicy.ONCE:
        return f"skipped: already posted (comment {earlier.comment_id})"
    if earlier.digest == body_digest:
        return f"skipped: already up to date (comment {earlier.comment_id})"
    return None


def posted_as(comment: Mapping[str, Any], marker: str, body_digest: str) -> bool:
    """Whether a listed comment is the one posted for `marker` with this text: its comment property
    names both (a comment of a release that kept no digest there is known by its marker alone)."""
    for prop in comment.get("properties") or []:
        if isinstance(prop, dict) and prop.get("key") == PROPERTY and isinstance(prop.get("value"), dict):
            value = prop["value"]
            return bool(value.get("marker") == marker and value.get("digest", body_digest) == body_digest)
    return False
