"""Comment text: the policy's templates rendered in the policy's locale.

`sopguard validate` renders every template with the variables of `config.templates` beforehand,
but a template can still fail on real values (a policy built without the loader, a division by a
value that is zero only here): then `TemplateFailed` ends that rule alone, and `contained` turns it
into the rule's broken result, so the other rules of the event keep their actions.

Every value a template prints is escaped as tracker text by the environment (`config.templates`):
callers pass the policy's own text as `Markdown` (`Context.text` does), and tracker text as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from jinja2 import Template

from config.i18n import say
from config.schema import Locale, MessageKind, Mode, Policy, Rule
from config.templates import Markdown, template_environment, variable_names
from policies.context import Outcome
from policies.models import RuleResult


class TemplateFailed(Exception):
    """The comment template `kind` could not be rendered for `rule`."""

    def __init__(self, kind: MessageKind, rule: Rule, mode: Mode, cause: str, locale: Locale = "en") -> None:
        self.kind, self.rule, self.mode, self.cause, self.locale = kind, rule, mode, cause, locale
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """Why, in the policy's locale (the template's own error stays as Jinja2 wrote it)."""
        return say(
            self.locale,
            "the comment template %(kind)s could not be rendered: %(cause)s",
            kind=self.kind,
            cause=self.cause,
        )

    def outcome(self) -> Outcome:
        """The rule's result: failed and broken, with no actions (no comment, no undo)."""
        result = RuleResult(self.rule.id, self.rule.sop, False, self.mode, (self.reason,), broken=True)
        return Outcome(result)


@lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    return template_environment().from_string(source)


def rule_variables(policy: Policy, rule: Rule) -> dict[str, Markdown]:
    """The variables every template gets for the rule it speaks for: the policy's own text."""
    return {
        "rule_id": Markdown(rule.id),
        "sop": Markdown(rule.sop),
        "clause": Markdown(policy.clause(rule.sop)),
    }


def render(policy: Policy, kind: MessageKind, rule: Rule, /, **variables: Any) -> str:
    """The comment text; raises `TemplateFailed` when the policy's template fails on these values.

    The variables must be exactly those `config.templates` lists for `kind`, which is what the
    templates were validated against; anything else is a bug here, not in the policy.
    """
    given = {**rule_variables(policy, rule), **variables}
    if set(given) != variable_names(kind):
        raise TypeError(
            f"'{kind}' rendered with {sorted(given)}; config.templates lists {sorted(variable_names(kind))}"
        )
    source = policy.messages.templates[kind].get(policy.locale)
    try:
        text = _compile(source).render(**given)
    except Exception as error:  # the template is the admin's code: any error it raises is its own
        cause = str(error) or type(error).__name__
        raise TemplateFailed(kind, rule, policy.mode_of(rule), cause, policy.locale) from error
    return "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"


def contained(outcomes: Iterable[Outcome]) -> Iterator[Outcome]:
    """The outcomes of a rule handler; when a template fails, the rule it spoke for ends broken
    there (what was yielded before it stands), and the caller goes on with the next handler."""
    try:
        yield from outcomes
    except TemplateFailed as failure:
        yield failure.outcome()
