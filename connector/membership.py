"""Who belongs to the policy's teams, as a tracker answers it, remembered for a while.

A connector asks its tracker (GitHub team memberships and collaborators; Jira groups and project
roles) and keeps each answer for `ttl` seconds, so that a burst of deliveries asks once; a
membership changed on the tracker is seen once its answer has expired.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from functools import partial
from typing import TypeVar

from cachetools import TTLCache

from config.schema import Team
from policies.models import Actor
from policies.people import person_key

_T = TypeVar("_T")

DEFAULT_TTL = 300.0


class Memberships:
    """Answers of one tracker by key, each kept `ttl` seconds; shared by the consumer threads."""

    def __init__(self, ttl: float = DEFAULT_TTL, maxsize: int = 4096) -> None:
        self._answers: TTLCache[Hashable, object] = TTLCache(maxsize=maxsize, ttl=ttl)
        self._lock = threading.Lock()

    def get(self, key: Hashable, ask: Callable[[], _T]) -> _T:
        """The remembered answer for `key`, else `ask()`'s (asked outside the lock, then kept)."""
        with self._lock:
            if key in self._answers:
                found: _T = self._answers[key]  # type: ignore[assignment]
                return found
        answer = ask()
        with self._lock:
            self._answers[key] = answer
        return answer


def teams_of(person: Actor, teams: Mapping[str, Team], member: Callable[[Team], bool]) -> frozenset[str]:
    """The names of the teams `person` is a member of, as `member` tells for each team."""
    if not person.login and not person.id:
        return frozenset()
    return frozenset(name for name, team in teams.items() if member(team))


def writers_teams(
    writers: Iterable[Actor], teams: Mapping[str, Team], member: Callable[[Actor, Team], bool]
) -> dict[str, frozenset[str]]:
    """The teams of each writer of a section a guard asks who wrote, by `people.person_key`, as
    `member` tells of a person and a team (`IssueSnapshot.writer_teams`)."""
    return {person_key(w): teams_of(w, teams, partial(member, w)) for w in writers}
