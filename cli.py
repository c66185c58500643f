"""The `sopguard` command line: serve, worker, validate, schema, simulate, adopt, replay, audit, db."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click
import requests
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from config.checks import all_rules
from config.i18n import say, say_plural
from config.loader import PolicyError, load_policy, read_policy
from config.schema import Locale, Policy
from config.settings import Settings
from connector.check import CheckReport
from connector.delivery import Delivery
from connector.errors import BadPayload, Ignored
from connector.github import events as github_events
from policies.calendar import holiday_warnings
from policies.engine import evaluate
from policies.models import Decision, Event, Source
from runtime.observability import configure_logging, use_metrics_directory
from runtime.services import Services, utc_now
from runtime.store import Store
from runtime.store.audit import describe, to_json

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise click.ClickException(f"invalid settings: {problems}") from None


def _database_source(settings: Settings) -> str:
    if settings.database_url:
        return "SOPGUARD_DATABASE_URL"
    if "data_dir" in settings.model_fields_set:
        return "in SOPGUARD_DATA_DIR"
    return "in the default data directory; SOPGUARD_DATA_DIR sets another"


def _existing_store(settings: Settings) -> Store:
    """The store of a command that reads what the service recorded: it says on stderr which database
    it reads, and refuses when there is none there rather than creating an empty one."""
    from runtime.store.database import connect, current_revision, display_name

    url = settings.resolved_database_url
    file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    missing = file is not None and not file.is_file()
    if not missing:
        engine = connect(url)
        url = display_name(engine)
        try:
            missing = current_revision(engine) is None
        except SQLAlchemyError as error:
            raise click.ClickException(f"cannot read the database {url}: {type(error).__name__}") from None
        finally:
            engine.dispose()
    click.echo(f"database: {url} ({_database_source(settings)})", err=True)
    if missing:
        raise click.ClickException(
            f"no sopguard database at {url}: `sopguard serve`, `sopguard worker` or `sopguard db upgrade` "
            "creates it; set SOPGUARD_DATA_DIR (or SOPGUARD_DATABASE_URL) if the service keeps it elsewhere"
        )
    return Store(settings.resolved_database_url, settings.resolved_queue_url)


def _policy(path: Path | None) -> Policy:
    try:
        return load_policy(path)
    except PolicyError as error:
        raise click.ClickException(f"the policy has problems:\n{error}") from None


def _locale(path: Path | None) -> Locale:
    """The locale of the policy in force, for what the command prints; English when it does not load."""
    try:
        return load_policy(path).locale
    except PolicyError:
        return "en"


def _logging(settings: Settings) -> None:
    """Log lines as SOPGUARD_LOG_FORMAT says (text on a terminal, JSON otherwise, when unset)."""
    configure_logging(settings)


Decorated = TypeVar("Decorated", bound=Callable[..., Any])


def _as_of(help: str) -> Callable[[Decorated], Decorated]:
    """`--now TIME` (UTC) of a command that can act as of another time, for a rehearsal."""
    return click.option(
        "--now", "at", type=click.DateTime(formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]), help=help
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sopguard")
def main() -> None:
    """Enforce a technical-service SOP on GitHub Issues and Jira.

    Every setting comes from the environment (SOPGUARD_*; see README.md); options given here win.

    The database is SOPGUARD_DATABASE_URL, else sopguard.db in SOPGUARD_DATA_DIR, else in `var` of
    the checkout sopguard is installed from (for a package installed otherwise, the user's data
    directory: ~/.local/share/sopguard on Linux),
    whichever folder a command runs in; the commands that read it (audit, report, retry, sweep)
    name it on stderr and refuse when it does not exist.
    """


@main.command()
@click.option("--host", help="Address to listen on [SOPGUARD_HOST, default 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [SOPGUARD_PORT, default 8080].")
@click.option(
    "--workers", type=int, help="Queue consumer threads; 0 = web only [SOPGUARD_WORKERS, default 2]."
)
@click.option("--policy", type=click.Path(path_type=Path), help="Policy file [SOPGUARD_POLICY].")
@click.option(
    "--insecure-dev",
    is_flag=True,
    default=None,
    help="Accept unsigned deliveries for trackers without a secret.",
)
def serve(
    host: str | None, port: int | None, workers: int | None, policy: Path | None, insecure_dev: bool | None
) -> None:
    """Run the webhook receiver and, in the same process, the inbox consumers and the SLA sweep."""
    settings = _settings(host=host, port=port, workers=workers, policy=policy, insecure_dev=insecure_dev)
    _logging(settings)
    use_metrics_directory(settings)  # before the modules that count are imported
    import waitress

    from app import InsecureConfiguration, create_app
    from runtime.consumer import Consumer
    from runtime.services import build_services

    _policy(settings.policy)
    services = build_services(settings)
    try:
        app = create_app(settings, services)
    except InsecureConfiguration as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"sopguard listening on http://{settings.host}:{settings.port} ({settings.workers} worker thread(s))"
    )
    if settings.workers == 0:
        _reload_policy_when_changed(services, threading.Event())
        waitress.serve(app, host=settings.host, port=settings.port)
        return
    server = waitress.create_server(app, host=settings.host, port=settings.port)
    threading.Thread(target=server.run, name="http", daemon=True).start()
    stop = _stopped_by_sigterm()
    _reload_policy_when_changed(services, stop)
    try:
        Consumer(services, settings.workers).run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        server.close()


@main.command()
@click.option("--workers", type=int, help="Consumer threads [SOPGUARD_WORKERS, default 2].")
@click.option("--drain", is_flag=True, help="Process what is ready now, then exit.")
@click.option("--policy", type=click.Path(path_type=Path), help="Policy file [SOPGUARD_POLICY].")
def worker(workers: int | None, drain: bool, policy: Path | None) -> None:
    """Run inbox consumers and the SLA sweep alone (scale-out: several machines on one database)."""
    settings = _settings(workers=workers, policy=policy)
    _logging(settings)
    use_metrics_directory(settings)  # before the modules that count are imported
    from runtime.consumer import Consumer
    from runtime.services import build_services

    _policy(settings.policy)
    services = build_services(settings)
    consumer = Consumer(services, max(settings.workers, 1))
    if drain:
        click.echo(f"processed {consumer.drain()} queued deliveries")
        return
    stop = _stopped_by_sigterm()
    _reload_policy_when_changed(services, stop)
    try:
        consumer.run(stop)
    except KeyboardInterrupt:
        stop.set()


def _reload_policy_when_changed(services: Services, stop: threading.Event) -> None:
    """The policy file is read again when it changes (looked at every second) and on SIGHUP; a
    file that does not load is refused, logged with its problems, and shown on /readyz."""
    if services.holder is not None:
        services.holder.watch(stop)
        services.holder.reload_on_sighup()


def _stopped_by_sigterm() -> threading.Event:
    """An event that SIGTERM (systemd's stop, a container's) sets, as Ctrl-C does: the consumers
    finish the delivery in hand, give its turn back, and the process exits."""
    stop = threading.Event()
    # Set from a thread: `Event.set` takes a lock that the interrupted main thread may hold.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop.set, daemon=True).start())
    return stop


@main.command()
@click.argument("delivery", required=False)
@click.option("--all-failed", is_flag=True, help="Every failed delivery.")
@click.option(
    "--source",
    type=click.Choice(["github", "jira"]),
    help="The tracker of DELIVERY when the id alone is ambiguous.",
)
def retry(delivery: str | None, all_failed: bool, source: str | None) -> None:
    """Queue failed deliveries again: one by id (as `sopguard audit --failed` lists it), or all.

    A running `serve` or `worker` picks them up; `sopguard worker --drain` runs them now.
    """
    if bool(delivery) == all_failed:
        raise click.UsageError("give a DELIVERY id or --all-failed (not both)")
    settings = _settings()
    locale = _locale(settings.policy)
    store = _existing_store(settings)
    if delivery is None:
        count = store.inbox.retry(None, utc_now())
    else:
        sources = [source] if source else ["github", "jira"]
        keys = [f"{s}:{delivery}" for s in sources if store.inbox.status(s, delivery) == "failed"]
        if not keys:
            raise click.ClickException(
                say(locale, "no failed delivery %(id)r (sopguard audit --failed lists them)", id=delivery)
            )
        count = store.inbox.retry(keys, utc_now())
    click.echo(
        say_plural(
            locale,
            "queued %(count)s failed delivery again",
            "queued %(count)s failed deliveries again",
            count,
        )
    )


def _instant(text: str) -> dt.datetime:
    """An ISO 8601 instant from the command line (`2026-12-01T08:00`, `...Z`, `...+08:00`); UTC when
    it names no offset."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time such as 2026-12-01T08:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


@main.command()
@click.option(
    "--since", required=True, help="Look at deliveries from this time on (ISO 8601, UTC unless it says)."
)
@click.option("--dry-run", is_flag=True, help="Only list the failed deliveries that would be redelivered.")
def redeliver(since: str, dry_run: bool) -> None:
    """Ask the GitHub App to send again each delivery that failed since TIME (GitHub does not
    retry by itself): once per event, and only if none of its attempts succeeded."""
    from connector.base import DeliveryRefused
    from connector.github.connector import app_deliveries
    from connector.github.deliveries import to_redeliver

    start = _instant(since)
    settings = _settings()
    try:
        api = app_deliveries(settings)
    except DeliveryRefused as refused:
        raise click.ClickException(str(refused)) from None
    try:
        failed = to_redeliver(api.since(start))
        for delivery in failed:
            what = f"{delivery.event}.{delivery.action}" if delivery.action else delivery.event
            if not dry_run:
                api.redeliver(delivery.id)
            verb = "would redeliver" if dry_run else "redelivered"
            click.echo(
                f"{verb} {delivery.guid} ({what}, failed {delivery.delivered_at:%Y-%m-%d %H:%M:%S} UTC "
                f"with {delivery.status_code or 'no answer'})"
            )
    except requests.RequestException as error:
        raise click.ClickException(f"GitHub's App deliveries API failed: {error}") from None
    click.echo(
        f"{len(failed)} failed deliver{'y' if len(failed) == 1 else 'ies'} since {start:%Y-%m-%d %H:%M} UTC"
    )


@main.command()
@click.option(
    "--since", help="Compare the issues updated since this time (default: since the last reconcile)."
)
@click.option("--policy", type=click.Path(path_type=Path), help="Policy file [SOPGUARD_POLICY].")
def reconcile(since: str | None, policy: Path | None) -> None:
    """Find the changes no delivery brought (after an outage) and queue each once.

    `serve` and `worker` do this every SOPGUARD_RECONCILE_INTERVAL seconds; a running one then
    processes what was queued, or `sopguard worker --drain` does it now.
    """
    start = _instant(since) if since else None
    settings = _settings(policy=policy)
    _logging(settings)
    from runtime.reconcile import reconcile as run_reconcile
    from runtime.services import build_services

    _policy(settings.policy)
    report = run_reconcile(build_services(settings), utc_now(), start)
    for scope in report.scopes:
        outcome = f"failed: {scope.error}" if scope.error else f"{len(scope.queued)} change(s) queued"
        waiting = (
            f", {len(scope.waiting)} issue(s) left for later (a delivery is queued)" if scope.waiting else ""
        )
        click.echo(f"{scope.scope} since {scope.since:%Y-%m-%d %H:%M:%S} UTC: {outcome}{waiting}")
    click.echo(f"{report.queued} change(s) no delivery brought, queued")
    if any(scope.error for scope in report.scopes):
        sys.exit(1)


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
def validate(path: Path | None) -> None:
    """Check a policy file and print every problem as PATH:LINE:COLUMN: message.

    Without PATH, checks SOPGUARD_POLICY or the embedded default policy.
    """
    path = path or _settings().policy
    try:
        loaded = read_policy(path)
    except PolicyError as error:
        for warning in error.warnings:
            click.echo(warning, err=True)
        for problem in error.problems:
            click.echo(str(problem))
        count = len(error.problems)
        click.echo(say_plural("en", "%(count)s problem found", "%(count)s problems found", count), err=True)
        sys.exit(1)
    for warning in loaded.warnings:
        click.echo(warning, err=True)
    policy = loaded.policy
    for warning in holiday_warnings(policy, utc_now().date()):
        click.echo(f"{path or 'default policy'}: warning: {warning}", err=True)
    rules = len(list(all_rules(dict(policy))))
    locale = policy.locale
    counts = [
        say_plural(locale, "%(count)s state", "%(count)s states", len(policy.workflow.states)),
        say_plural(locale, "%(count)s transition", "%(count)s transitions", len(policy.workflow.transitions)),
        say_plural(locale, "%(count)s rule", "%(count)s rules", rules),
        say_plural(locale, "%(count)s scope", "%(count)s scopes", len(policy.scopes)),
    ]
    name = str(path) if path else say(locale, "default policy")
    click.echo(
        say(locale, "%(policy)s: valid (%(counts)s)", policy=name, counts=say(locale, ", ").join(counts))
    )


@main.command()
@click.option(
    "--github", "repositories", multiple=True, help="A repository to check (owner/name); repeatable."
)
@click.option("--jira", "projects", multiple=True, help="A Jira project to check (key); repeatable.")
@click.option("--policy", type=click.Path(path_type=Path), help="Policy file [SOPGUARD_POLICY].")
def check(repositories: tuple[str, ...], projects: tuple[str, ...], policy: Path | None) -> None:
    """Compare the policy with the live trackers and print every mismatch with what to do.

    Jira: the project's statuses, the workflow's transitions (Cloud), priorities, intake fields by
    name, the sub-task type. GitHub: every label the policy uses. Exits 1 when anything differs.
    """
    if not repositories and not projects:
        raise click.UsageError("name what to check: --github owner/name and/or --jira KEY")
    settings = _settings(policy=policy)
    model = _policy(settings.policy)
    reports: list[CheckReport] = []
    if repositories:
        reports.extend(_check_github(settings, model, repositories))
    if projects:
        reports.extend(_check_jira(settings, model, projects))
    for report_ in reports:
        for mismatch in report_.mismatches:
            click.echo(f"{report_.target}: {mismatch}")
        for note in report_.notes:
            click.echo(f"{report_.target}: note: {note}", err=True)
        if report_.ok:
            click.echo(f"{report_.target}: matches the policy ({', '.join(report_.checked)})")
    problems = sum(len(r.mismatches) for r in reports)
    if problems:
        click.echo(f"{problems} mismatch(es) found", err=True)
        sys.exit(1)


def _check_github(settings: Settings, policy: Policy, repositories: tuple[str, ...]) -> list[CheckReport]:
    from connector.github.check import check as check_labels
    from connector.github.connector import GithubConnector

    if not settings.github_configured:
        raise click.ClickException("--github needs GITHUB_TOKEN (or a GitHub App's id and key)")
    connector = GithubConnector.from_settings(settings)
    return [
        check_labels(policy, name, _read(partial(connector.repository_labels, name))) for name in repositories
    ]


def _check_jira(settings: Settings, policy: Policy, projects: tuple[str, ...]) -> list[CheckReport]:
    from connector.jira.api import JiraApi
    from connector.jira.check import check as check_project
    from connector.jira.check import read_project

    if not settings.jira_configured:
        raise click.ClickException("--jira needs JIRA_URL with JIRA_EMAIL and JIRA_API_TOKEN (or JIRA_PAT)")
    api = JiraApi.from_settings(settings)
    return [check_project(policy, _read(partial(read_project, api, key))) for key in projects]


def _read(read: Callable[[], T]) -> T:
    """A tracker read for `check`; a failure is the command's error, with the tracker's reason."""
    try:
        return read()
    except Exception as error:
        raise click.ClickException(f"could not read the tracker: {error}") from None


@main.command()
def schema() -> None:
    """Print the policy's JSON Schema, for editors (yaml-language-server) to complete and check."""
    click.echo(json.dumps(Policy.model_json_schema(by_alias=True), indent=2, ensure_ascii=False))


def _event_name_from_path(path: Path) -> str:
    """`issues__labeled.json` or `issues/labeled.payload.json` -> `issues`; '' when neither names an event."""
    candidate = path.name.split("__", 1)[0] if "__" in path.name else path.parent.name
    return candidate if candidate in github_events.KNOWN_EVENTS else ""


@main.command()
@click.option("--source", type=click.Choice(["github", "jira"]), required=True, help="Which tracker sent it.")
@click.option(
    "--event", "event_file", type=click.File("rb"), required=True, help="A webhook body (JSON); - for stdin."
)
@click.option("--event-name", help="GitHub's X-GitHub-Event (default: guessed from the file name).")
@click.option("--state", "last_state", help="The SOP state the service last knew for this issue.")
@click.option(
    "--policy", type=click.Path(path_type=Path), help="Policy file (default: SOPGUARD_POLICY or embedded)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def simulate(
    source: Source,
    event_file: Any,
    event_name: str | None,
    last_state: str | None,
    policy: Path | None,
    as_json: bool,
) -> None:
    """Print what the policy decides for one delivery. No network, no database."""
    policy_model = _policy(policy or _settings().policy)
    locale = policy_model.locale
    body = event_file.read()
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise click.ClickException(
            say(locale, "%(file)s is not JSON: %(error)s", file=event_file.name, error=error)
        ) from None
    if not isinstance(payload, dict):
        raise click.ClickException(
            say(locale, "%(file)s is not a webhook body: it must be a JSON object", file=event_file.name)
        )
    if last_state and policy_model.workflow.state(last_state) is None:
        known = ", ".join(s.id for s in policy_model.workflow.states)
        raise click.ClickException(
            say(
                locale,
                "--state %(state)s: the policy has no such state (known: %(known)s)",
                state=last_state,
                known=known,
            )
        )
    if source == "github" and not event_name:
        event_name = _event_name_from_path(Path(str(getattr(event_file, "name", ""))))
        if not event_name:
            raise click.ClickException(
                say(locale, "give --event-name (the X-GitHub-Event header, e.g. issues)")
            )
    name = event_name or str(payload.get("webhookEvent", ""))
    try:
        event, snapshot = Delivery(source, "simulated", name, payload).normalize()
    except (Ignored, BadPayload) as reason:
        click.echo(say(locale, "not processed: %(reason)s", reason=reason))
        return
    if last_state:
        snapshot = replace(snapshot, last_state=last_state)
    decision = evaluate(policy_model, event, snapshot, utc_now())
    click.echo(_decision_json(event, decision) if as_json else _decision_text(event, decision, locale))


def _decision_json(event: Event, decision: Decision) -> str:
    return json.dumps(
        {
            "event": event.name,
            "issue": str(event.issue),
            "actor": event.actor.login,
            "note": decision.note,
            "rules": [
                {**r.__dict__, "mode": str(r.mode), "reasons": list(r.reasons)} for r in decision.results
            ],
            "actions": [describe(a) for a in decision.actions],
        },
        indent=2,
        ensure_ascii=False,
    )


def _verdict(passed: bool | None, locale: Locale) -> str:
    """`ok`, `FAIL` or `-` (no rule), as the audit and a simulation mark a rule's result."""
    if passed is None:
        return "-"
    return say(locale, "ok") if passed else say(locale, "FAIL")


def _rule(rule_id: str, sop: str, mode: str, locale: Locale) -> str:
    return say(locale, "%(rule)s (SOP %(sop)s, %(mode)s)", rule=rule_id, sop=sop, mode=mode)


def _decision_text(event: Event, decision: Decision, locale: Locale) -> str:
    lines = [
        say(
            locale,
            "%(event)s on %(issue)s by %(actor)s",
            event=event.name,
            issue=event.issue,
            actor=event.actor.login,
        )
    ]
    if decision.note:
        lines.append(f"  {decision.note}")
    for result in decision.results:
        mark = _verdict(result.passed, locale).ljust(4)
        lines.append(f"  {mark} {_rule(result.rule_id, result.sop, str(result.mode), locale)}")
        lines.extend(f"         {reason}" for reason in result.reasons)
    if decision.actions:
        lines.append(say(locale, "actions:"))
    for number, action in enumerate(decision.actions, 1):
        data = describe(action)
        body = data.pop("body", None)
        details = ", ".join(f"{k}={v}" for k, v in data.items() if k != "type")
        lines.append(f"  {number}. {data['type']}: {details}")
        if body:
            lines.extend(f"       | {line}" for line in body.splitlines())
    return "\n".join(lines)


@main.command()
@_as_of("Sweep as of this UTC time (default: now).")
@click.option("--policy", type=click.Path(path_type=Path), help="Policy file [SOPGUARD_POLICY].")
def sweep(at: dt.datetime | None, policy: Path | None) -> None:
    """Post the SLA warnings and breach notices that are due, once each (S1.4, S3.3).

    `serve` and `worker` do this every minute; this runs it once, with a progress bar.
    """
    settings = _settings(policy=policy)
    _logging(settings)
    use_metrics_directory(settings)  # its notices are counted with the service's
    from runtime.services import build_services
    from runtime.sweep import sweep as run_sweep

    _policy(settings.policy)
    services = build_services(settings, _existing_store(settings))
    now = at.replace(tzinfo=dt.UTC) if at else utc_now()
    due = services.store.ledger.count_due(now)
    with click.progressbar(length=due, label=f"issues due at {now:%Y-%m-%d %H:%M} UTC") as bar:
        report = run_sweep(services, now, progress=lambda _: bar.update(1))
    failed = sum(1 for a in report.applied if a.outcome.startswith("failed"))
    click.echo(f"{report.notices} notice(s) posted on {report.due} issue(s) due; {failed} action(s) failed")


def _adopt_scopes(policy: Policy, given: tuple[str, ...]) -> list[str]:
    """The scopes to adopt: those given, else every scope the policy names without a wildcard."""
    if given:
        return list(given)
    named = [s.match.github or s.match.jira or "" for s in policy.scopes]
    plain = [name for name in named if name and not any(c in name for c in "*?[")]
    if not plain:
        raise click.UsageError("give --scope (owner/name or a Jira project key): the policy names none")
    return plain


def _describe_adopted(found: Any, locale: Locale) -> list[str]:
    from config.i18n import duration
    from policies.sla_notices import show_instant

    lines = [f"{found.ref}  {found.verdict}" + (f" in {found.state}" if found.state else "")]
    lines += [f"    {reason}" for reason in found.reasons]
    for clock in found.clocks:
        if clock.phase.value == "stopped":
            shown = "met" if clock.met else "missed"
            lines.append(f"    {clock.target_id} ({clock.level}): stopped, {shown}")
        elif clock.breached:
            lines.append(
                f"    {clock.target_id} ({clock.level}): missed by {duration(-clock.remaining, locale)}"
            )
        else:
            due = show_instant(clock.deadline, locale)
            lines.append(f"    {clock.target_id} ({clock.level}): {clock.phase.value}, due {due}")
    if found.verdict in ("adopted", "would adopt"):
        posts = "; ".join(found.posts) or "nothing"
        later = (
            f" (next SLA notice due {show_instant(found.next_notice, locale)})" if found.next_notice else ""
        )
        lines.append(f"    posts: {posts}{later}")
    return lines


@main.command()
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="A GitHub repository (owner/name) or Jira project key; repeatable. Default: the policy's scopes.",
)
@click.option("--dry-run", is_flag=True, help="List what would be adopted; record nothing.")
@_as_of("Adopt as of this UTC time (default: now), as `sweep --now` does; for a rehearsal.")
@click.option("--policy", type=click.Path(path_type=Path), help="Policy file [SOPGUARD_POLICY].")
def adopt(scopes: tuple[str, ...], dry_run: bool, at: dt.datetime | None, policy: Path | None) -> None:
    """Adopt the open issues of a tracker sopguard is installed on.

    Lists every open issue of each scope (GitHub: the issues list; Jira: a JQL search) that the
    policy's `adoption` rule covers, with the state it is adopted in (read from its labels or
    status as they are), its SLA clocks (rebuilt from the tracker's history, comments included)
    and what is posted: nothing. Targets missed before the adoption are recorded, never announced.
    Without --dry-run the adoption is recorded in the ledger; no comment or label is written.

    Safe to re-run: an issue the ledger already follows is left as it is. Stop `serve` first, or
    not: an issue whose delivery is being processed is left for that delivery (or the next run).
    """
    from tqdm import tqdm

    from connector.base import DeliveryRefused, TrackerUnavailable
    from runtime.adopt import adopt as run_adopt
    from runtime.services import build_services

    settings = _settings(policy=policy)
    _logging(settings)
    model = _policy(settings.policy)
    services = build_services(settings)
    if at is not None:
        services.clock = lambda: at.replace(tzinfo=dt.UTC)
    counts: dict[str, int] = {}
    for scope in _adopt_scopes(model, scopes):
        with tqdm(desc=scope, unit=" issue", file=sys.stderr, disable=None) as bar:
            try:
                for found in run_adopt(services, scope, dry_run=dry_run, progress=lambda _: bar.update(1)):
                    counts[found.verdict] = counts.get(found.verdict, 0) + 1
                    bar.clear()
                    click.echo("\n".join(_describe_adopted(found, model.locale)))
                    bar.refresh()
            except (TrackerUnavailable, DeliveryRefused) as error:
                raise click.ClickException(
                    f"{scope}: stopped, the tracker did not answer ({error}); what was adopted is kept: "
                    "run it again to go on"
                ) from None
    summary = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())) or "no open issue"
    click.echo(f"{summary}{' (dry run: nothing recorded)' if dry_run else ''}", err=True)


@main.command()
@click.option("--since", help="First day of the period, YYYY-MM-DD (default: four weeks before --until).")
@click.option("--until", help="Last day of the period, YYYY-MM-DD (default: today, UTC).")
@click.option("--scope", help="Only this repository or project: github:OWNER/NAME or jira:KEY.")
@click.option("--priority", help="Only this priority level (P1, P2, ...).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "html"]), default="md", show_default=True)
@click.option(
    "--output", type=click.File("w", encoding="utf-8"), default="-", help="File to write; - for stdout."
)
def report(
    since: str | None, until: str | None, scope: str | None, priority: str | None, fmt: str, output: Any
) -> None:
    """How well the SLA targets were met and where the SOP is skipped (P4, S5.3), for the issues
    opened in the period, per scope and priority, in the policy's locale."""
    from runtime.report_page import RENDERERS, BadQuery, gather, issue_link, parse_query
    from runtime.services import build_services

    settings = _settings()
    services = build_services(settings, _existing_store(settings))
    policy, now = services.policy, utc_now()
    args = {"since": since or "", "until": until or "", "scope": scope or "", "priority": priority or ""}
    try:
        query = parse_query(args, policy, now.date())
    except BadQuery as error:
        raise click.BadParameter(str(error)) from None
    policy = query.policy(policy)
    page = gather(policy, services.store, query, now)
    output.write(RENDERERS[fmt](page, policy, policy.locale, lambda ref: issue_link(ref, settings)))


@main.command()
@click.option(
    "--since",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day of the period (UTC), YYYY-MM-DD.",
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Last day of the period (UTC), included, YYYY-MM-DD [default: today].",
)
@click.option(
    "--policy",
    "candidate",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The candidate policy file to try.",
)
@click.option("--format", "fmt", type=click.Choice(["md", "json"]), default="md", show_default=True)
def replay(since: dt.datetime, until: dt.datetime | None, candidate: Path, fmt: str) -> None:
    """What a candidate policy would have decided on the deliveries of a period, compared with
    what was decided (the audit log): per issue, the new refusals (a rule that fails: a change
    undone, information asked for, a priority corrected), the refusals that disappear, other
    priorities and other comments; then totals.

    The deliveries are those the inbox received in the period (SOPGUARD_DATABASE_URL), run again
    in order through the engine with the candidate policy, each issue from its first recorded
    delivery, each judged at the time it was. Nothing is read from or written to a tracker, and
    the service's database is only read. Progress goes to stderr.

    \b
    Before deploying a change of the policy:
      sopguard validate new-sop.yaml
      sopguard replay --since 2026-11-23 --until 2026-11-29 --policy new-sop.yaml
    """
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # what it runs again is not counted as the service's
    from runtime.replay import CannotReplay, as_json, as_markdown
    from runtime.replay import replay as run_replay

    first, last = since.date(), (until or utc_now()).date()
    if last < first:
        raise click.BadParameter(f"{last} is before --since {first}", param_hint="--until")
    settings = _settings(log_level="WARNING")  # the worker's lines of each delivery are not wanted
    _logging(settings)
    model = _policy(candidate)
    in_force = _policy(settings.policy)
    store = _existing_store(settings.model_copy(update={"queue_url": ""}))  # the inbox's own table
    with click.progressbar(length=0, label="replaying", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(1)

        try:
            report = run_replay(settings, store, model, in_force, first, last, progress)
        except CannotReplay as error:
            raise click.ClickException(str(error)) from None
    click.echo((as_json if fmt == "json" else as_markdown)(report, str(candidate)), nl=fmt == "json")


@main.group()
def export() -> None:
    """Write tracker configuration derived from the policy."""


@export.command("github-issue-form")
@click.option(
    "--policy", type=click.Path(path_type=Path), help="Policy file (default: SOPGUARD_POLICY or embedded)."
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".github/ISSUE_TEMPLATE"),
    show_default=True,
    help="Directory to write the form into; - prints it instead.",
)
@click.option("--scope", help="Use the policy as it applies to this repository (owner/name).")
def github_issue_form(policy: Path | None, output: Path, scope: str | None) -> None:
    """The issue form whose fields are the policy's intake fields (S1.2), dropdowns for options."""
    from connector.github.form import FORM_FILE, issue_form

    model = _policy(policy or _settings().policy)
    text = issue_form(model.for_issue("github", scope) if scope else model)
    if str(output) == "-":
        click.echo(text, nl=False)
        return
    output.mkdir(parents=True, exist_ok=True)
    (output / FORM_FILE).write_text(text, encoding="utf-8")
    click.echo(f"wrote {output / FORM_FILE}")


@export.command("jira-workflow")
@click.option(
    "--policy", type=click.Path(path_type=Path), help="Policy file (default: SOPGUARD_POLICY or embedded)."
)
@click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("--scope", help="Use the policy as it applies to this Jira project (key).")
@click.option(
    "--fields",
    "fields_file",
    type=click.File("rb"),
    help="The JSON of GET /rest/api/2/field, to name custom fields in the Jira expressions.",
)
def jira_workflow_command(
    policy: Path | None, output_format: str, scope: str | None, fields_file: Any
) -> None:
    """The statuses, transitions and Cloud validator expressions that make a Jira workflow follow the policy."""
    from connector.jira.workflow import as_json, as_table, field_ids_from, jira_workflow

    model = _policy(policy or _settings().policy)
    try:
        fields = json.loads(fields_file.read()) if fields_file else []
    except ValueError as error:
        raise click.ClickException(f"--fields: not JSON: {error}") from None
    if not isinstance(fields, list):
        raise click.ClickException("--fields: expected the JSON list that GET /rest/api/2/field returns")
    workflow = jira_workflow(model.for_issue("jira", scope) if scope else model, field_ids_from(fields))
    click.echo(as_json(workflow) if output_format == "json" else as_table(workflow), nl=False)


@main.group()
def db() -> None:
    """Show or upgrade the database's schema revision.

    `db current` shows the revision the database is at, `db upgrade` brings it up to date.
    The database is SOPGUARD_DATABASE_URL, or sopguard.db in SOPGUARD_DATA_DIR. `serve` and `worker`
    upgrade an older database themselves when they start, and log it; `db upgrade` does it ahead of
    the start. Back the database up first: the previous version cannot use an upgraded one.

    \b
    Upgrading from the release before migrations (no revision recorded):
      sopguard worker --drain     # with the previous version: run what its queue still holds
      cp var/sopguard.db var/sopguard.db.bak
      sopguard db upgrade         # with this version
    """


@db.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database to this version's schema.

    Nothing happens when it is current. An empty database gets the whole schema; one made by the release before migrations is
    recognised and upgraded. The deliveries it still had queued are marked failed, since their bodies
    stayed in the old queue: drain that first. Safe while another sopguard process starts on the
    same database: one upgrades, the others wait for it.
    """
    from runtime.store.database import UnknownRevision, connect, ensure_schema

    _logging(_settings(log_level="WARNING"))
    try:
        click.echo(str(ensure_schema(connect(_settings().resolved_database_url))))
    except UnknownRevision as error:
        raise click.ClickException(str(error)) from None


@db.command("current")
def db_current() -> None:
    """Show the database's schema revision.

    And whether this version needs it upgraded; changes nothing, and creates no database file.
    """
    from runtime.store.database import connect, current_revision, display_name, head_revision, known_revisions

    url, head = _settings().resolved_database_url, head_revision()
    file = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ":memory:"
    if file != ":memory:" and not Path(file).exists():
        raise click.ClickException(
            f"{url}: no database yet (`sopguard db upgrade` creates it at {head}; "
            "SOPGUARD_DATA_DIR or SOPGUARD_DATABASE_URL names another)"
        )
    engine = connect(url)
    revision, name = current_revision(engine), display_name(engine)
    if revision == head:
        click.echo(f"{name}: {revision} (current)")
    elif revision is not None and revision not in known_revisions():
        click.echo(f"{name}: {revision}, newer than this version of sopguard knows (its newest: {head})")
    elif revision is None:
        click.echo(f"{name}: empty (`sopguard db upgrade` creates the schema at {head})")
    else:
        click.echo(f"{name}: {revision}, this version needs {head}: run `sopguard db upgrade`")


@main.command()
@click.option("--issue", help="Only this issue: owner/name#123 or PROJ-123.")
@click.option("--limit", default=200, show_default=True, help="At most this many entries (newest).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--failed", is_flag=True, help="The deliveries that failed, with why (sopguard retry runs them again)."
)
def audit(issue: str | None, limit: int, as_json: bool, failed: bool) -> None:
    """List the decisions recorded in the audit log, oldest first (or, with --failed, the failed deliveries)."""
    settings = _settings()
    locale = _locale(settings.policy)
    store = _existing_store(settings)
    if failed:
        _print_failed(store, issue, limit, as_json, locale)
        return
    for entry in store.audit.entries(issue, limit):
        if as_json:
            click.echo(to_json(entry))
            continue
        verdict = _verdict(entry.passed, locale)
        rule = (
            _rule(entry.rule_id, entry.sop or "", entry.mode or "", locale)
            if entry.rule_id
            else say(locale, "no rule")
        )
        click.echo(
            f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.issue}  {entry.event}  {verdict} {rule}  -> {entry.outcome}"
        )
        for reason in entry.reasons:
            click.echo(f"    {reason}")


def _print_failed(store: Store, issue: str | None, limit: int, as_json: bool, locale: Locale) -> None:
    rows = [f for f in store.inbox.failed(limit) if issue is None or f.issue.split(":", 1)[-1] == issue]
    for failed in rows:
        if as_json:
            data = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in failed.__dict__.items()}
            click.echo(json.dumps(data, ensure_ascii=False))
            continue
        when = f"{failed.processed_at:%Y-%m-%d %H:%M:%S}" if failed.processed_at else "-"
        click.echo(f"{when}  {failed.source} {failed.delivery_id}  {failed.event_name}  {failed.issue}")
        click.echo(f"    {failed.error}")
    if not as_json:
        click.echo(
            say_plural(locale, "%(count)s failed delivery", "%(count)s failed deliveries", len(rows)),
            err=True,
        )


if __name__ == "__main__":
    main()
