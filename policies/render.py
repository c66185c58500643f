"""Comment text: the policy's templates rendered in the policy's locale."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Template

from config.schema import MessageKind, Policy, Rule
from config.templates import template_environment


@lru_cache(maxsize=256)
def _compile(source: str) -> Template:
    return template_environment().from_string(source)


def rule_variables(policy: Policy, rule: Rule) -> dict[str, str]:
    """The variables every template gets for the rule it speaks for."""
    return {"rule_id": rule.id, "sop": rule.sop, "clause": policy.clause(rule.sop)}


def render(policy: Policy, kind: MessageKind, rule: Rule, /, **variables: Any) -> str:
    source = policy.messages.templates[kind].get(policy.locale)
    text = _compile(source).render(**rule_variables(policy, rule), **variables)
    return "\n".join(line.rstrip() for line in text.strip().splitlines()) + "\n"
