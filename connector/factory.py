"""Which connector acts for each tracker: the real one when it is configured, else a dry run."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

from config.schema import Policy
from config.settings import ALL_TRACKERS, Settings
from connector.base import Connector
from connector.dry_run import DryRunConnector
from policies.models import Source

log = logging.getLogger(__name__)


def build_connectors(settings: Settings, policy: Policy) -> dict[Source, Connector]:
    connectors: dict[Source, Connector] = {}
    for source in ALL_TRACKERS:
        connector = None if settings.dry_run else _real_connector(settings, policy, source)
        if connector is None:
            reason = "SOPGUARD_DRY_RUN is set" if settings.dry_run else "no credentials are configured"
            log.info("%s: dry run (%s); actions are recorded in the audit log, not applied", source, reason)
        connectors[source] = connector or DryRunConnector()
    return connectors


def _real_connector(settings: Settings, policy: Policy, source: Source) -> Connector | None:
    if source == "github" and settings.github_configured:
        from connector.github.connector import GithubConnector

        return GithubConnector.from_settings(settings)
    if source == "jira" and settings.jira_configured:
        from connector.jira.connector import JiraConnector

        return JiraConnector.from_settings(settings, policy)
    return None


def with_policy(connectors: Mapping[Source, Connector], policy: Policy) -> dict[Source, Connector]:
    """The same connectors acting by `policy` (a reload): a connector that reads the policy is
    copied with the new one, keeping its session and what it has learned (fields, transitions)."""
    from connector.jira.connector import JiraConnector

    updated: dict[Source, Connector] = {}
    for source, connector in connectors.items():
        if isinstance(connector, JiraConnector):
            connector = copy.copy(connector)
            connector.policy = policy
        updated[source] = connector
    return updated
