"""What every rule handler receives, and what it gives back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from config.i18n import say
from config.schema import Mode, Policy, Rule, Text
from config.templates import Markdown
from policies.models import Action, Event, IssueSnapshot, RuleResult
from policies.text import NO_RESPONSE


@dataclass(frozen=True)
class Context:
    policy: Policy
    event: Event
    snapshot: IssueSnapshot
    now: dt.datetime

    def tell(self, message: str, /, **values: object) -> str:
        """One of the program's sentences (an audit reason) in the policy's locale (`config.i18n`)."""
        return say(self.policy.locale, message, **values)

    def text(self, text: Text) -> Markdown:
        """The policy's text in its locale, which comment templates print as written."""
        return Markdown(text.get(self.policy.locale))

    def shown_value(self, field_id: str, value: str) -> str:
        """A field's value as comments name it: its option's title in the locale (the policy's
        text, `Markdown`), else the tracker's text as it is (which templates escape)."""
        field = self.policy.intake.field(field_id)
        option = field.option(value) if field and value else None
        return Markdown(option.shown(self.policy.locale)) if option else value

    def mode(self, rule: Rule) -> Mode:
        return self.policy.mode_of(rule)

    def field_value(self, field_id: str) -> str:
        """An intake field's value, read from where the policy says this tracker keeps it."""
        field = self.policy.intake.field(field_id)
        if field is None:
            return ""
        key = field.github.heading if self.event.source == "github" else field.jira.field
        value = self.snapshot.fields.get(key, "").strip()
        if value == NO_RESPONSE:
            value = ""
        return value or self.service_desk_value(field_id)

    def service_desk_value(self, field_id: str) -> str:
        """What a Jira Service Management request says of an intake field it leaves empty: by its
        request type (`request_types`), and for the customer tier by its organization."""
        desk = self.policy.trackers.jira.service_desk
        kind = self.snapshot.request_type.casefold()
        for name, values in desk.request_types.items():
            if kind and name.casefold() == kind and values.get(field_id):
                return values[field_id]
        if field_id == self.policy.priority.tier_field:
            by_name = {name.casefold(): tier for name, tier in desk.organizations.items()}
            tiers = [by_name[o.casefold()] for o in self.snapshot.organizations if o.casefold() in by_name]
            return min(tiers, key=self._tier_rank, default="")
        return ""

    def _tier_rank(self, tier: str) -> tuple[int, str]:
        """How high a customer tier stands (lower is higher), so that a request of several
        organizations takes the highest tier any of them has, whatever order Jira lists them in: the
        priority's `top_tiers` first (they raise the level), then the tier field's options as listed,
        then any other value."""
        rule = self.policy.priority
        field = self.policy.intake.field(rule.tier_field)
        ranked = [*rule.top_tiers, *(o.value for o in field.options)] if field else list(rule.top_tiers)
        folded = [t.casefold() for t in ranked]
        key = tier.casefold()
        return (folded.index(key) if key in folded else len(folded), key)


def is_service_request(policy: Policy, snapshot: IssueSnapshot) -> bool:
    """Checklist items (GitHub sub-issues with the checklist label) and Jira sub-tasks are not held
    to the SOP themselves, nor given SLA clocks: their parent is."""
    return not snapshot.is_subtask and policy.trackers.github.checklist_label not in snapshot.labels


@dataclass(frozen=True)
class Outcome:
    """One rule's verdict on one event and the actions it asks for."""

    result: RuleResult
    actions: tuple[Action, ...] = ()


def outcome(
    rule: Rule, mode: Mode, *, passed: bool, reasons: Iterable[str] = (), actions: Iterable[Action] = ()
) -> Outcome:
    return Outcome(RuleResult(rule.id, rule.sop, passed, mode, tuple(reasons)), tuple(actions))


Handler = Callable[[Context], Iterable[Outcome]]
