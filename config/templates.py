"""The one Jinja2 environment that every comment template is parsed and rendered with, and the
catalogue of the variables each kind of comment receives.

Templates come from the policy file, which admins edit, so they run sandboxed; an unknown
variable is an error rather than an empty string, so a typo never reaches a tracker silently.

Tracker text is made safe here, and only here. Every value a template prints with `{{ ... }}` goes
through the environment's `finalize`, `escape`, which shows it as the text it is in GitHub
Markdown: no mention, no HTML, no emphasis, code, link, heading, list, quote or table, and no line
break. Only `Markdown` values are printed as they are: text we wrote ourselves (the policy's state
titles, clauses, rule ids and requirements; times and durations we computed; the mentions the
engine means, made with `mention`). So the safe way is the default: a value nobody marked, a value
a filter turned back into a plain string (`join`, `upper`, `~`), and a string literal inside
`{{ ... }}` are all escaped, which at worst shows Markdown we meant literally; the Markdown of a
template belongs in its text, outside `{{ ... }}`. A deliberate mention is written in the template,
`@{{ actor }}`: the `@` is the template's, the login is escaped text; an `@` inside a value is
followed by a word joiner (U+2060), which GitHub does not read as a mention and
`connector.jira.format` drops, never making it a Jira mention either.

`escape` writes `<`, `>` and `&` as the entities `&lt;`, `&gt;`, `&amp;` (no tag, autolink or
entity of the value survives, not even as text a careless reader of the raw comment could take
for HTML) and backslash-escapes the rest, which CommonMark allows for every ASCII punctuation
character; both render as the character itself. `connector.jira.format` reads them back to plain
text before writing ADF or wiki markup. Inside a template's code span (`` `{{ value }}` ``) Markdown
shows backslashes, so templates quote tracker values with quotes, not backticks.

The catalogue is the contract between the policy file and the engine: `policies.render` refuses
to render a kind with any other set of names, and `config.template_checks` renders every template
of a policy with the sample values below, so a template that validates renders at run time.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from config.schema import MessageKind


class Markdown(str):
    """Comment text we wrote, which templates print as it is (see the module's docstring)."""

    __slots__ = ()


# After an `@` from tracker text: GitHub mentions only `@` directly followed by a login.
MENTION_BREAK = "\u2060"
# What CommonMark lets a backslash escape: every ASCII punctuation character.
ESCAPABLE = r"[!-/:-@\[-`{-~]"
# The characters of HTML, autolinks and entities, written as entities.
ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Punctuation that opens or closes inline Markdown anywhere in a line (emphasis, code, links,
# tables, math, issue references), and the escape itself.
_INLINE_SPECIAL = re.compile(r"[\\`*_~\[\]|#$]")
# What starts a block at the beginning of a line (list item, thematic break, setext underline,
# ordered item `1.` or `1)` before a space); a value may be printed at the start of a line or item.
_BLOCK_START = re.compile(r"^(?:[-+=]|(\d{1,9})([.)])(?=\s|$))")
# Invisible characters that reorder or hide text: bidirectional controls and C0/C1 controls.
_HIDDEN = re.compile(r"[\u202a-\u202e\u2066-\u2069\x00-\x08\x0e-\x1f\x7f-\x9f]")


def escape(value: object) -> Markdown:
    """`value` as one line of GitHub Markdown that reads as the text it is; `Markdown` stays as it is."""
    if isinstance(value, Markdown):
        return value
    text = " ".join(_HIDDEN.sub(" ", str(value)).split())
    text = "".join(ENTITIES.get(character, character) for character in text)
    text = _INLINE_SPECIAL.sub(lambda m: "\\" + m.group(), text)
    text = text.replace("@", "@" + MENTION_BREAK)
    text = _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else "\\" + m.group(), text)
    return Markdown(text)


def mention(login: str) -> Markdown:
    """A mention the engine means (an assignee it speaks to): `@` and the escaped login."""
    return Markdown("@" + escape(login))


@cache
def template_environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        finalize=escape,
    )


# Every template receives these, for the rule it speaks for (`policies.render.rule_variables`).
RULE_VARIABLES: Mapping[str, tuple[Any, ...]] = {
    "rule_id": ("owner-assigned",),
    "sop": ("S2.3",),
    "clause": ("A named owner is assigned.",),
}

_STAGE = {"title": "Planning", "sop": "S2.2", "clause": "Write a plan."}
_VIOLATIONS = [
    {
        "rule_id": "intake-complete",
        "sop": "S1.2",
        "clause": "Collect the required information.",
        "requirement": "The required information is given",
        "details": ["Customer", "Impact"],
    },
    {
        "rule_id": "owner-assigned",
        "sop": "S2.3",
        "clause": "A named owner is assigned.",
        "requirement": "Someone is assigned",
        "details": [],
    },
]
_REASON = {"level": "P2", "impact": "Minor", "urgency": "High", "tier": "Key", "raised": True}
_DEADLINES = [
    {"target": "first response", "deadline": "Nov 24, 2026, 10:15\u202fAM (China Time)"},
    {"target": "resolution", "deadline": "Nov 25, 2026, 6:00\u202fPM (China Time)"},
]

# Each kind's own variables and the values to render them with: one value where templates only
# print it, several where templates branch on it (true and false, empty and non-empty lists).
# Values have the shapes the engine passes: strings, booleans, numbers, lists of strings or dicts.
# Durations, instants and percentages come formatted for the policy's locale (`config.i18n`), and
# option values as their titles in it.
KIND_VARIABLES: Mapping[MessageKind, Mapping[str, tuple[Any, ...]]] = {
    "transition-rejected": {
        "undone": (True, False),
        "actor": ("dana",),
        "from_state": ("Triage",),
        "to_state": ("In progress",),
        "entry_from": ([], ["Planning", "Diagnosis"]),
        "skipped": ([], [_STAGE]),
        "violations": ([], _VIOLATIONS),
        "allowed": ([], ["Diagnosis", "Waiting for customer"]),
    },
    "intake-missing": {
        "missing": ([], ["Customer", "Impact"]),
        "invalid": ([], [{"field": "Customer tier", "value": "Gold", "options": ["Strategic", "Key"]}]),
    },
    "priority-set": {
        "level": ("P2",),
        "impact": ("Minor",),
        "urgency": ("High",),
        "tier": ("Key", "-"),
        "raised": (True, False),
        "applied": (True, False),
    },
    "priority-override": {"level": ("P1",), "actor": ("dana",), "computed": ("", "P3", "P1")},
    "checklist-created": {
        "checklist": ("Self-check",),
        "item_kind": ("sub-issue", "sub-task"),
        "items": (["The problem is solved", "The fix is documented"],),
        "created": (True, False),
    },
    "sla-warning": {
        "target": ("first response",),
        "kind": ("first-response", "resolution"),
        "level": ("P1",),
        "deadline": ("Nov 24, 2026, 10:15\u202fAM (China Time)",),
        "who": ("", Markdown("@dana")),
        "percent": ("75%",),
        "remaining": ("3 minutes",),
    },
    "sla-breached": {
        "target": ("resolution",),
        "kind": ("first-response", "resolution"),
        "level": ("P2",),
        "deadline": ("Nov 24, 2026, 6:00\u202fPM (China Time)",),
        "who": ("", Markdown("@dana")),
        "overdue": ("", "1 hour, 5 minutes"),
        "escalation": ("", Markdown("@acme/leads")),
        "delay_notice": (True, False),
        "new_date": ("", "Dec 20, 2026"),
    },
    "receipt": {
        "reason": (None, _REASON, {**_REASON, "tier": "", "raised": False}),
        "level": ("P2",),
        "assumed": (True, False),
        "next_steps": ([], ["Triage", "Waiting for customer"]),
        "deadlines": ([], _DEADLINES),
    },
    "satisfaction": {"reporter": ("", "carol")},
    "label-refused": {
        "undone": (True, False),
        "actor": ("dana", ""),  # empty: a change told without its author (a reconcile's)
        "label": ("plan/approved",),
        "by": ([], ["approvers"]),
        "not_by": ([], ["assignee", "author-of-plan"]),
        "requirement": ("A high-risk plan is approved by a reviewer",),
    },
    "low-rating": {"score": (1, 2), "escalation": ("", Markdown("@acme/leads"))},
    "plan-changed": {
        "actor": ("dana",),
        "approval_label": ("plan/approved",),
        "approved": (True, False),
        "waiver_labels": ([], ["risk/low"]),
        "changed_label": ("plan/changed",),
        "during_work": (True, False),
    },
    "command-answer": {
        "command": ("approve-plan",),
        "actor": ("dana",),
        "problem": ("", "not-allowed", "not-now", "usage"),
        "by": ([], ["approvers"]),
        "not_by": ([], ["assignee", "author-of-plan"]),
        "states": ([], ["Planning", "In progress"]),
        "usage": ('/delay YYYY-MM-DD "reason"',),
    },
    "status-unmapped": {"status": ("Paused",), "state": ("Diagnosis",), "actor": ("dana",)},
    "delay-refused": {
        "actor": ("dana",),
        "problems": (["internal"], ["late", "no-date", "past-date", "no-reason"], []),
        "deadline": ("", "Nov 24, 2026, 6:00\u202fPM (China Time)"),
        "new_date": ("", "Dec 20, 2026"),
        "command": ("", "delay"),
    },
}


def variable_names(kind: MessageKind) -> frozenset[str]:
    """Every name a template of this kind may use (its own and the rule's)."""
    return frozenset(KIND_VARIABLES[kind]) | frozenset(RULE_VARIABLES)


def sample_variables(kind: MessageKind) -> Iterator[dict[str, Any]]:
    """Every combination of the kind's sample values, so each branch of a template is taken."""
    samples = {**RULE_VARIABLES, **KIND_VARIABLES[kind]}
    for values in itertools.product(*samples.values()):
        yield dict(zip(samples, values, strict=True))
