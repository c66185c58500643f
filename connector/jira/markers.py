"""Which comments sopguard has posted on a Jira issue, kept in an issue property so none is posted twice.

Jira comments cannot carry hidden text the way a GitHub comment carries an HTML comment, so the
marker lives beside the issue: the issue property `sopguard` maps each marker to the comment it
produced and a digest of the Markdown it was rendered from. One GET of the property answers every
`PostComment` of a delivery, however many comments the issue has. Each comment also carries the
marker as a comment property, which is how a post that timed out is found again.

Jira comments are never edited (the documented v3 subset we check requests against has no comment
edit, and an edited comment rewrites the issue's history): where GitHub would edit (`UPSERT`,
`UPDATE_ONLY`), a changed text is posted once as a follow-up and the marker points at it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.models import CommentPolicy

PROPERTY = "sopguard"  # the issue property, and the comment property holding a comment's marker
MAX_ENTRIES = 200
MAX_CHARS = 30_000  # Jira allows 32,768 characters per property value


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


def encode(markers: Mapping[str, Posted]) -> dict[str, Any]:
    """The property's value, oldest markers dropped beyond `MAX_ENTRIES` or the size limit."""
    kept = list(markers.items())[-MAX_ENTRIES:]
    while True:
        value = {
            "version": 1,
            "comments": {m: {"id": p.comment_id, "digest": p.digest} for m, p in kept},
        }
        if len(json.dumps(value)) <= MAX_CHARS or len(kept) <= 1:
            return value
        kept = kept[1:]


def skip_reason(on_existing: CommentPolicy, earlier: Posted | None, body_digest: str) -> str | None:
    """Why the comment is not posted, or `None` to post it (first time, or a changed text)."""
    if earlier is None:
        return "skipped: no earlier comment to update" if on_existing == CommentPolicy.UPDATE_ONLY else None
    if on_existing == CommentPolicy.ONCE:
        return f"skipped: already posted (comment {earlier.comment_id})"
    if earlier.digest == body_digest:
        return f"skipped: already up to date (comment {earlier.comment_id})"
    return None


def marker_of(comment: Mapping[str, Any]) -> str | None:
    """The marker a comment carries in its `sopguard` comment property (`expand=properties`)."""
    for prop in comment.get("properties") or []:
        if isinstance(prop, dict) and prop.get("key") == PROPERTY and isinstance(prop.get("value"), dict):
            marker = prop["value"].get("marker")
            return str(marker) if marker is not None else None
    return None
