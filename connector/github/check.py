"""`sopguard check` on GitHub: every label the policy reads or sets exists in the repository.

GitHub creates a missing label when sopguard adds it to an issue, but a person cannot pick a label
the repository does not have: without `priority/P1` nobody can set that priority by hand, without
`plan/approved` no guard that asks for it can ever pass. One request per page of labels.
"""

from __future__ import annotations

from collections.abc import Iterable

from config.schema import LabelGuard, NoLabelGuard, Policy
from connector.check import CheckReport, Mismatch, counted


def policy_labels(policy: Policy) -> dict[str, str]:
    """Each label the policy uses on GitHub, with what it means there (policy order)."""
    github = policy.trackers.github
    labels: dict[str, str] = {}
    for state in policy.workflow.states:
        labels.setdefault(github.status_label(state.id), f"the status label of state '{state.id}'")
    for level in policy.priority.levels:
        labels.setdefault(github.priority_label(level), f"priority {level}")
    labels.setdefault(policy.intake.needs_info_label, f"missing intake information ({policy.intake.sop})")
    labels.setdefault(policy.sla.breach_label, "a missed SLA target")
    if policy.checklists:
        labels.setdefault(github.checklist_label, "checklist items (sub-issues)")
    for transition in policy.workflow.transitions:
        for guard in transition.guards:
            if isinstance(guard, LabelGuard | NoLabelGuard):
                labels.setdefault(guard.label, f"guard '{guard.id}' ({guard.sop})")
            if guard.when_label:
                labels.setdefault(guard.when_label, f"when guard '{guard.id}' applies ({guard.sop})")
            if guard.unless_label:
                labels.setdefault(guard.unless_label, f"when guard '{guard.id}' is waived ({guard.sop})")
    for restricted in policy.restricted_labels:
        labels.setdefault(restricted.label, f"restricted label '{restricted.id}' ({restricted.sop})")
    return labels


def check(policy: Policy, repository: str, existing: Iterable[str]) -> CheckReport:
    """The policy (as it applies to this repository) against the repository's labels.

    GitHub compares label names case-insensitively, and so does this check.
    """
    wanted = policy_labels(policy.for_issue("github", repository))
    have = {name.casefold() for name in existing}
    mismatches = [
        Mismatch(
            f"label '{label}' ({why}) does not exist in {repository}",
            f"create it: gh label create '{label}' --repo {repository}",
        )
        for label, why in wanted.items()
        if label.casefold() not in have
    ]
    return CheckReport(f"GitHub repository {repository}", mismatches, [counted(len(wanted), "label")])
