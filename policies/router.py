"""Route events to rule handlers by kind, in the manner of gidgethub's `Router`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from policies.context import Handler
from policies.models import EventKind


class Router:
    def __init__(self, *others: Router) -> None:
        self._handlers: defaultdict[EventKind, list[Handler]] = defaultdict(list)
        for other in others:
            for kind, handlers in other._handlers.items():
                self._handlers[kind].extend(handlers)

    def register(self, *kinds: EventKind) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            for kind in kinds:
                self._handlers[kind].append(handler)
            return handler

        return add

    def handlers(self, kinds: frozenset[EventKind]) -> list[Handler]:
        """Every handler registered for any of `kinds`, each once, in registration order."""
        found = [h for kind in EventKind if kind in kinds for h in self._handlers.get(kind, ())]
        return list(dict.fromkeys(found))
