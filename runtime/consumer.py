"""The consumers: threads that take deliveries from the inbox one issue-turn at a time, a heartbeat
that keeps their turns alive while they work, and the SLA sweep on its own schedule (so a backlog
of deliveries never delays a due notice)."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from runtime.reconcile import reconcile_every
from runtime.services import Services, worker_name
from runtime.store.database import checkpoint_often
from runtime.worker import run

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0


class Consumer:
    def __init__(
        self, services: Services, threads: int, *, sweep: bool = True, sweep_every: float = SWEEP_EVERY
    ) -> None:
        self.services = services
        self.threads = max(threads, 1)
        self.sweep = sweep
        self.sweep_every = sweep_every
        self.lease = dt.timedelta(seconds=services.settings.turn_lease)
        self._working: set[str] = set()  # the owners in the middle of a delivery: their turns are renewed
        self._working_lock = threading.Lock()
        checkpoint_often(services.store.engine)

    def step(self, owner: str) -> bool:
        """Take and run one delivery; `False` when nothing was ready. While it runs, the heartbeat
        renews its turn; once it is over (even if giving the turn back failed) nothing does, so a
        turn this process could not give back runs out on its own."""
        inbox = self.services.store.inbox
        with self._working_lock:
            self._working.add(owner)
        try:
            received = inbox.take(owner, self.services.clock(), self.lease)
            if received is None:
                return False
            run(self.services, received, owner)
            return True
        finally:
            with self._working_lock:
                self._working.discard(owner)

    def drain(self) -> int:
        """Run every delivery that is ready, in this thread, until none is; how many ran."""
        owner, done = worker_name(), 0
        while self.step(owner):
            done += 1
        return done

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set. Interrupted (Ctrl-C, SIGINT), each thread first finishes the
        delivery in hand and gives its turn back, so no issue waits for a lease to run out after a
        restart; a second interrupt stops at once."""
        workers = [
            threading.Thread(target=self._consume, args=(stop,), name=f"consumer-{n}", daemon=True)
            for n in range(self.threads)
        ]
        workers.append(threading.Thread(target=self._heartbeat, args=(stop,), name="heartbeat", daemon=True))
        if self.sweep:
            workers.append(threading.Thread(target=self._sweep, args=(stop,), name="sla-sweep", daemon=True))
            workers.append(
                threading.Thread(
                    target=reconcile_every, args=(self.services, stop), name="reconcile", daemon=True
                )
            )
        for thread in workers:
            thread.start()
        try:
            stop.wait()  # not a join: a join interrupted by Ctrl-C takes its running thread for ended
        except KeyboardInterrupt:
            stop.set()
            raise
        finally:
            for thread in workers:
                thread.join()

    def _consume(self, stop: threading.Event) -> None:
        owner = worker_name()
        idle = self.services.settings.poll_interval
        while not stop.is_set():
            try:
                if self.step(owner):
                    continue
            except Exception:  # the database is unreachable: say so, wait, go on
                log.exception("the inbox could not be read")
                stop.wait(1.0)
            self.services.store.inbox.wait(idle)

    def _heartbeat(self, stop: threading.Event) -> None:
        """Renew the turns of the deliveries at work well before they run out, so only a dead (or
        stuck for a whole lease) process loses them."""
        every = self.lease.total_seconds() / 3
        while not stop.wait(every):
            try:
                self.renew_working()
            except Exception:
                log.exception("the turns could not be renewed")

    def renew_working(self) -> None:
        """Extend the turns of this process's threads that are in the middle of a delivery."""
        with self._working_lock:
            working = sorted(self._working)
        for owner in working:
            self.services.store.inbox.turns.renew(owner, self.services.clock(), self.lease)

    def _sweep(self, stop: threading.Event) -> None:
        """The SLA sweep, at the start of every interval, in its own thread: it never waits for a
        consumer thread, nor behind the deliveries queued (it skips only the issues whose turn a
        delivery holds, until the next sweep)."""
        from runtime.sweep import sweep

        owner, every = worker_name(), self.sweep_every
        while not stop.wait(every - (self.services.clock().timestamp() % every)):
            try:
                sweep(self.services, self.services.clock(), owner=owner)
            except Exception:
                log.exception("the SLA sweep failed")
