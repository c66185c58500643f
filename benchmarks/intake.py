"""How fast the webhook receiver takes deliveries in, beside a bare Flask app on the same server.

Both apps are served the production way (`gunicorn -c gunicorn.conf.py`, 2 processes, loopback)
and sent the real 14 KB `issues.labeled` body, validly signed, each delivery with its own
X-GitHub-Delivery. Each gets two measurements, each on a freshly started server:

- closed loop: `--connections` keep-alive clients send as fast as answers come back, for
  `--seconds`; the figure is 2xx answers per second. The client is `wrk` (apt-get install wrk):
  aiohttp, the fastest Python client tried, drives ~2,800 requests/s on this 2-core machine
  against the bare app where wrk drives ~7,400, so a Python client would measure itself;
- open loop: `--rate` deliveries per second for `--seconds`, each sent at its scheduled instant
  whatever the server does, as GitHub would; a delivery's latency runs FROM THAT INSTANT (waiting
  in the client counts: no coordinated omission) until its answer, its error, or GitHub's 10 s
  timeout. For sopguard the database is then asked for every delivery sent: an acknowledged (2xx)
  delivery missing from it is lost.

The machine is shared and noisy, so the whole is repeated `--repeat` times, the two apps taking
turns, and medians are printed. Everything is bounded: `--seconds` per measurement, 10 s timeouts.

    .venv/bin/python -m benchmarks.intake [--seconds 20] [--rate 500] [--repeat 3] [--connections 32]
    .venv/bin/python -m benchmarks.intake --app 'module:make_app()' [--no-database-check]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from sqlalchemy import select

from config.settings import Settings
from runtime.store import Store
from runtime.store.inbox import Inbox
from runtime.store.schema import deliveries
from webhooks.overload import allow_open_files
from webhooks.signatures import sign

ROOT = Path(__file__).resolve().parents[1]
BODY = ROOT / "tests" / "fixtures" / "github" / "issues__labeled.json"
SECRET = "benchmark-secret"
GITHUB_TIMEOUT = 10.0
WORKERS = 2
KINDS = ("2xx", "503", "other", "error", "timeout")

WRK_SCRIPT = """
local counter = 0
local prefix = ""
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  local file = io.open(args[1], "rb")
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "issues"
  wrk.headers["X-Hub-Signature-256"] = args[2]
  prefix = args[3] .. "-" .. thread_index .. "-"
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. counter
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx_3xx": %d, "socket_errors": %d, "timeouts": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write, e.timeout))
end
"""


@dataclass(frozen=True)
class Target:
    name: str
    app: str
    has_store: bool


@dataclass(frozen=True)
class ClosedLoop:
    ok_per_second: float
    other_answers: int
    socket_errors: int
    cpu_per_delivery_us: float = 0.0  # the gunicorn workers' CPU time over the 2xx answers


@dataclass(frozen=True)
class Served:
    url: str
    pid: int  # gunicorn's master

    def workers_cpu_seconds(self) -> float:
        """User and system CPU time of the master's children so far (Linux `/proc`)."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid:  # ppid
                    ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Outcome:
    delivery_id: str
    status: int | None  # None: no answer (see `failure`)
    failure: str  # "", "timeout" or "error"
    latency: float  # seconds from the scheduled send instant
    lag: float  # seconds the generator started the send after its scheduled instant

    @property
    def kind(self) -> str:
        """One of KINDS."""
        if self.failure or self.status is None:
            return self.failure
        return "2xx" if 200 <= self.status < 300 else "503" if self.status == 503 else "other"


@dataclass(frozen=True)
class OpenLoop:
    outcomes: list[Outcome]
    stored: int | None  # deliveries found in the database, of all sent (None: no database)
    lost: int | None  # acknowledged (2xx) and not in the database

    def percentile_ms(self, share: float) -> float:
        latencies = sorted(o.latency for o in self.outcomes)
        return 1000 * latencies[min(len(latencies) - 1, int(share * len(latencies)))]

    def generator_lag_ms(self) -> float:
        """p99 of how late sends started: above a few ms, the client, not the server, was slow."""
        lags = sorted(o.lag for o in self.outcomes)
        return 1000 * lags[int(0.99 * (len(lags) - 1))]

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)


# --- the server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(data_dir: Path, port: int) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))}
    return {
        **inherited,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "SOPGUARD_TRACKERS": "github",
        "SOPGUARD_WORKERS": "0",
        "SOPGUARD_DATA_DIR": str(data_dir),
        "SOPGUARD_HOST": "127.0.0.1",
        "SOPGUARD_PORT": str(port),
        "SOPGUARD_WEB_WORKERS": str(WORKERS),
    }


def _wait_until_answering(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until a worker answers any HTTP request; then a moment for the other workers to boot."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"gunicorn exited with {server.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
            probe.sendall(b"GET /benchmark-ready HTTP/1.0\r\n\r\n")
            if probe.recv(12).startswith(b"HTTP/"):
                time.sleep(1.0)
                return
        time.sleep(0.1)
    sys.exit(f"gunicorn did not answer within 60 s:\n{log.read_text()}")


@contextlib.contextmanager
def served(target: Target, data_dir: Path) -> Iterator[Served]:
    """`gunicorn -c gunicorn.conf.py TARGET` on a free loopback port; yields where it is."""
    port = _free_port()
    data_dir.mkdir(parents=True)
    log = data_dir / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", target.app]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, cwd=ROOT, env=_environment(data_dir, port), stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_answering(port, server, log)
        yield Served(f"http://127.0.0.1:{port}/webhooks/github", server.pid)
        if server.poll() is not None:
            sys.exit(f"gunicorn stopped during the measurement:\n{log.read_text()}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- the closed loop (wrk) -----------------------------------------------------------------------


def closed_loop(url: str, body_path: Path, seconds: int, connections: int, workdir: Path) -> ClosedLoop:
    script = workdir / "deliveries.lua"
    script.write_text(WRK_SCRIPT)
    signature = sign(SECRET, body_path.read_bytes())
    command = [
        "wrk", "--threads", "1", "--connections", str(connections), "--duration", f"{seconds}s",
        "--timeout", f"{GITHUB_TIMEOUT:.0f}s", "--script", str(script), url,
        "--", str(body_path), signature, f"closed-{uuid.uuid4().hex[:8]}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        sys.exit(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    ok = summary["requests"] - summary["non_2xx_3xx"]
    return ClosedLoop(
        ok_per_second=ok / (summary["duration_us"] / 1e6),
        other_answers=summary["non_2xx_3xx"],
        socket_errors=summary["socket_errors"] + summary["timeouts"],
    )


# --- the open loop (asyncio + aiohttp) -----------------------------------------------------------


async def _deliver(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], scheduled: float
) -> Outcome:
    loop = asyncio.get_running_loop()
    delivery_id = headers["X-GitHub-Delivery"]
    lag = loop.time() - scheduled
    try:
        async with (
            asyncio.timeout_at(scheduled + GITHUB_TIMEOUT),
            session.post(url, data=body, headers=headers) as response,
        ):
            await response.read()
    except TimeoutError:
        return Outcome(delivery_id, None, "timeout", GITHUB_TIMEOUT, lag)
    except aiohttp.ClientError:
        return Outcome(delivery_id, None, "error", loop.time() - scheduled, lag)
    return Outcome(delivery_id, response.status, "", loop.time() - scheduled, lag)


async def _open_loop(url: str, body: bytes, rate: int, seconds: int) -> list[Outcome]:
    """Send `rate * seconds` deliveries at exact instants, none waiting for another's answer."""
    base = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-Hub-Signature-256": sign(SECRET, body),
    }
    run = f"open-{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    # No pool limit: GitHub's deliveries do not queue behind one another on its side either.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = loop.time() + 0.1
        sends: list[asyncio.Task[Outcome]] = []
        for index in range(rate * seconds):
            scheduled = start + index / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            headers = {**base, "X-GitHub-Delivery": f"{run}-{index}"}
            sends.append(asyncio.create_task(_deliver(session, url, body, headers, scheduled)))
        return list(await asyncio.gather(*sends))


def stored_deliveries(data_dir: Path, delivery_ids: Sequence[str]) -> set[str]:
    """Which of these GitHub deliveries the receiver kept: its spool taken into the inbox first, as
    a consumer would (and what that costs a consumer, printed)."""
    store = Store(Settings(data_dir=data_dir, database_url="").resolved_database_url)
    started, cpu_started, taken = time.monotonic(), time.process_time(), 0
    while isinstance(store.inbox, Inbox) and (new := store.inbox.take_in()):
        taken += new
    if taken:
        cpu = time.process_time() - cpu_started
        print(
            f"    taken into the inbox: {taken} deliveries in {time.monotonic() - started:.1f} s, "
            f"{cpu / taken * 1e6:.0f} µs of CPU each (the consumer's share, not the door's)",
            flush=True,
        )
    with store.engine.connect() as db:
        kept = {
            row[0]
            for row in db.execute(select(deliveries.c.delivery_id).where(deliveries.c.source == "github"))
        }
    return kept & set(delivery_ids)


def _checked(outcomes: list[Outcome], data_dir: Path) -> OpenLoop:
    stored = stored_deliveries(data_dir, [o.delivery_id for o in outcomes])
    acknowledged = {o.delivery_id for o in outcomes if o.kind == "2xx"}
    return OpenLoop(outcomes, len(stored), len(acknowledged - stored))


# --- the report ----------------------------------------------------------------------------------


def _describe_open(result: OpenLoop) -> str:
    latency = "/".join(f"{result.percentile_ms(s):.0f}" for s in (0.5, 0.9, 0.99, 1.0))
    counts = " ".join(f"{kind} {result.count(kind)}" for kind in KINDS)
    text = f"p50/p90/p99/max {latency} ms; {counts}; generator lag p99 {result.generator_lag_ms():.0f} ms"
    if result.stored is not None:
        text += f"; in the database {result.stored}, acknowledged but lost {result.lost}"
    return text


def _summary(
    targets: Sequence[Target],
    closed: dict[str, list[ClosedLoop]],
    opened: dict[str, list[OpenLoop]],
    args: argparse.Namespace,
) -> str:
    lines = [f"\nmedians over {args.repeat} run(s), {WORKERS} gunicorn workers, loopback:"]
    throughput = {t.name: statistics.median([c.ok_per_second for c in closed[t.name]]) for t in targets}
    for target in targets:
        cpu = statistics.median([c.cpu_per_delivery_us for c in closed[target.name]])
        lines.append(
            f"  {target.name:9} closed loop ({args.connections} connections, {args.seconds} s): "
            f"{throughput[target.name]:,.0f} 2xx/s, {cpu:.0f} µs of the workers' CPU each"
        )
    baseline, measured = targets
    # Each run measures the two apps one after the other, so a run's ratio sees the same moment of
    # a shared machine; the median of those is the figure that noise moves least.
    paired = [
        m.ok_per_second / b.ok_per_second
        for b, m in zip(closed[baseline.name], closed[measured.name], strict=True)
    ]
    lines.append(
        f"  ratio {measured.name}/{baseline.name}: {statistics.median(paired):.3f} (median of each run's ratio: "
        f"{', '.join(f'{r:.2f}' for r in paired)}); of the medians above: "
        f"{throughput[measured.name] / throughput[baseline.name]:.3f}"
    )
    for target in targets:
        runs = opened[target.name]
        latency = "/".join(
            f"{statistics.median([r.percentile_ms(s) for r in runs]):.0f}" for s in (0.5, 0.9, 0.99, 1.0)
        )
        counts = " ".join(f"{kind} {statistics.median([r.count(kind) for r in runs]):.0f}" for kind in KINDS)
        lag = statistics.median([r.generator_lag_ms() for r in runs])
        line = (
            f"  {target.name:9} open loop ({args.rate}/s for {args.seconds} s): p50/p90/p99/max {latency} ms; "
            f"{counts}; generator lag p99 {lag:.0f} ms"
        )
        if runs[0].stored is not None:
            line += f"; stored {statistics.median([r.stored or 0 for r in runs]):.0f}, lost {max(r.lost or 0 for r in runs)} (worst run)"
        lines.append(line)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=20, help="length of each measurement (default 20)")
    parser.add_argument("--rate", type=int, default=500, help="open-loop deliveries per second (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the whole; medians are printed")
    parser.add_argument("--connections", type=int, default=32, help="closed-loop clients (default 32)")
    parser.add_argument("--app", default="app:create_app()", help="the app measured, in gunicorn's syntax")
    parser.add_argument(
        "--no-database-check",
        action="store_true",
        help="the app measured keeps no sopguard database: skip the lost-delivery check",
    )
    parser.add_argument("--baseline", default="benchmarks.bare_app:app", help="the yardstick app")
    parser.add_argument("--body", type=Path, default=BODY, help="the delivery body (default issues.labeled)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600 or not 1 <= args.rate <= 5000 or not 1 <= args.repeat <= 10:
        parser.error("bounded: --seconds 1..600, --rate 1..5000, --repeat 1..10")
    if shutil.which("wrk") is None:
        sys.exit("the closed loop needs wrk: apt-get install wrk")
    allow_open_files(int(args.rate * GITHUB_TIMEOUT) + 1000)  # every delivery may be open at once
    targets = (
        Target("bare", args.baseline, has_store=False),
        Target("sopguard", args.app, has_store=not args.no_database_check),
    )
    closed: dict[str, list[ClosedLoop]] = {t.name: [] for t in targets}
    opened: dict[str, list[OpenLoop]] = {t.name: [] for t in targets}
    with tempfile.TemporaryDirectory(prefix="sopguard-intake-") as scratch:
        for run in range(1, args.repeat + 1):
            for target in targets:
                data_dir = Path(scratch) / f"{run}-{target.name}-closed"
                with served(target, data_dir) as server:
                    cpu_before = server.workers_cpu_seconds()
                    result = closed_loop(server.url, args.body, args.seconds, args.connections, Path(scratch))
                    cpu = server.workers_cpu_seconds() - cpu_before
                result = replace(
                    result, cpu_per_delivery_us=cpu / max(1.0, result.ok_per_second * args.seconds) * 1e6
                )
                closed[target.name].append(result)
                print(
                    f"run {run} {target.name:9} closed loop: {result.ok_per_second:,.0f} 2xx/s, "
                    f"{result.cpu_per_delivery_us:.0f} µs of CPU each "
                    f"(other answers {result.other_answers}, socket errors {result.socket_errors})",
                    flush=True,
                )
            for target in targets:
                data_dir = Path(scratch) / f"{run}-{target.name}-open"
                with served(target, data_dir) as server:
                    outcomes = asyncio.run(
                        _open_loop(server.url, args.body.read_bytes(), args.rate, args.seconds)
                    )
                # the server has stopped (gracefully): what it acknowledged is on disk
                opened_run = (
                    _checked(outcomes, data_dir) if target.has_store else OpenLoop(outcomes, None, None)
                )
                opened[target.name].append(opened_run)
                print(f"run {run} {target.name:9} open loop: {_describe_open(opened_run)}", flush=True)
    print(_summary(targets, closed, opened, args))


if __name__ == "__main__":
    main()
