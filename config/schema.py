"""The policy language: what an admin may write in the YAML file, as pydantic models.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Structural rules live here; rules that relate one part of the file to another (a transition to a
state that does not exist, a priority with no SLA target) live in `config.checks`, so that all
of them can be reported at once with their line and column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

SopClause = Annotated[
    str,
    StringConstraints(pattern=r"^(P[1-5]|S[1-5]\.[1-9])$"),
    Field(description="An SOP clause ID such as S1.3 or P4."),
]
Ident = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9-]*$"),
    Field(description="A lower-case id: letters, digits and dashes."),
]
PriorityLevel = Annotated[str, StringConstraints(pattern=r"^P[1-9]$")]
Locale = Literal["en", "zh-CN"]

_DURATION = re.compile(r"^\s*(?:(?P<d>\d+)d)?\s*(?:(?P<h>\d+)h)?\s*(?:(?P<m>\d+)m)?\s*$")


def _parse_duration(value: Any) -> Any:
    """Accept `15m`, `4h`, `1h30m`, `2d` (24-hour days) and ISO 8601 (`PT15M`); nothing unit-less."""
    if isinstance(value, dt.timedelta):
        return value
    text = str(value).strip()
    if text.startswith("P"):
        return text
    match = _DURATION.match(text)
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"'{value}' is not a duration; write it like 15m, 4h, 1h30m or 2d")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    return dt.timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"])


def _positive(value: dt.timedelta) -> dt.timedelta:
    if value <= dt.timedelta(0):
        raise ValueError("must be longer than zero")
    return value


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_parse_duration),
    AfterValidator(_positive),
    Field(description="A duration such as 15m, 4h, 1h30m or 2d (working time)."),
]


def _known_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_known_time_zone)]


class Mode(StrEnum):
    """How a rule acts: `enforce` undoes and comments, `warn` only comments, `off` is skipped."""

    ENFORCE = "enforce"
    WARN = "warn"
    OFF = "off"


_CAUTION = [Mode.OFF, Mode.WARN, Mode.ENFORCE]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Text(Strict):
    """Text shown to people, in English and (optionally) Simplified Chinese."""

    en: str
    zh_cn: str | None = Field(default=None, alias="zh-CN")

    def get(self, locale: Locale) -> str:
        return self.zh_cn if locale == "zh-CN" and self.zh_cn else self.en


class Rule(Strict):
    """Anything that enforces a clause: it has an id, the clause, and optionally its own mode."""

    id: Ident
    sop: SopClause
    mode: Mode | None = Field(default=None, description="Overrides the global mode for this rule.")


# --- people ---------------------------------------------------------------------------------

REPORTER = "reporter"
ASSIGNEE = "assignee"
AUTHOR_OF_PLAN = "author-of-plan"
TEAM_MEMBERS = "team-members"
BUILT_IN_PEOPLE = (REPORTER, ASSIGNEE, AUTHOR_OF_PLAN, TEAM_MEMBERS)
"""Names that always mean someone: the issue's reporter and assignees, whoever wrote its plan,
and the service team (a team the policy may define under this name; see `Policy.team_members`)."""


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_IDENT_SCHEMA = {"type": "string", "pattern": r"^[a-z][a-z0-9-]*$"}
PeopleNames = Annotated[
    list[Ident],
    BeforeValidator(_one_or_many),
    WithJsonSchema(
        {
            "anyOf": [_IDENT_SCHEMA, {"type": "array", "items": _IDENT_SCHEMA}],
            "description": "Teams of `teams:` or built-ins (reporter, assignee, author-of-plan, team-members).",
        }
    ),
]

GithubAssociation = Literal["OWNER", "MEMBER", "COLLABORATOR", "CONTRIBUTOR"]


def _github_people(value: Any) -> Any:
    """`[login, "@org/team"]` is short for `{users: [login], teams: [org/team]}`."""
    if not isinstance(value, list):
        return value
    entries = [str(v) for v in value]
    return {
        "users": [e for e in entries if not e.startswith("@")],
        "teams": [e.removeprefix("@") for e in entries if e.startswith("@")],
    }


SHORTHAND = "x-sopguard-shorthand"
"""Marks the JSON Schema of a shorter way to write a value (its full form is the other option)."""


def _short_github_people(schema: dict[str, Any]) -> None:
    """The JSON Schema of `Team` also accepts the short form of its `github` list."""
    github = schema["properties"]["github"]
    short = {
        "type": "array",
        "items": {"type": "string"},
        "description": 'Logins and "@org/team" teams.',
        SHORTHAND: True,
    }
    schema["properties"]["github"] = {"anyOf": [github, short]}


class GithubPeople(Strict):
    users: list[str] = Field(default_factory=list, description="GitHub logins.")
    teams: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]] = Field(
        default_factory=list,
        description="Organization teams as `org/team-slug` (`@org/team` in the short form).",
    )
    associations: list[GithubAssociation] = Field(
        default_factory=list,
        description="The author's association with the repository GitHub reports (OWNER, MEMBER, COLLABORATOR).",
    )


class JiraPeople(Strict):
    users: list[str] = Field(
        default_factory=list, description="Account ids (Cloud) or user names (Data Center)."
    )
    groups: list[str] = Field(default_factory=list, description="Jira group names.")
    roles: list[str] = Field(default_factory=list, description="Project roles of the issue's project.")


class Team(Strict):
    """A named group of people, as each tracker knows them; membership is looked up and cached."""

    model_config = ConfigDict(**Strict.model_config, json_schema_extra=_short_github_people)

    github: Annotated[GithubPeople, BeforeValidator(_github_people)] = Field(default_factory=GithubPeople)
    jira: JiraPeople = Field(default_factory=JiraPeople)
    title: Text | None = Field(
        default=None, description="How comments name the team in each locale (default: its name)."
    )


DEFAULT_TEAM_MEMBERS = Team(
    github=GithubPeople(associations=["OWNER", "MEMBER", "COLLABORATOR"]),
    jira=JiraPeople(roles=["Administrators", "Developers", "Member", "Service Desk Team"]),
)
"""Who the service team is when a policy does not say (`teams: {team-members: ...}`)."""


# --- workflow -------------------------------------------------------------------------------


class State(Strict):
    id: Ident
    sop: SopClause = Field(description="The clause that defines this stage.")
    title: Text
    checklists: list[Ident] = Field(
        default_factory=list, description="Checklists whose items become subtasks on entering."
    )


class GuardBase(Rule):
    requirement: Text = Field(description="What must hold, as told to people when it does not.")
    when_label: str | None = Field(
        default=None, description="Apply the guard only while the issue carries this label."
    )
    unless_label: str | None = Field(
        default=None,
        description="Waive the guard while the issue carries this label, one that counts only when "
        "someone allowed to add it did (`restricted_labels`, a label guard's `by`/`not_by`). Such a "
        "guard is demanded when the work first starts: not again on a return from waiting to the "
        "stage the issue was in, nor of an issue adopted past the earliest stage it is checked on.",
    )


class IntakeGuard(GuardBase):
    """All required intake fields (S1.2) are filled in."""

    check: Literal["intake-complete"]


class AssigneeGuard(GuardBase):
    """Someone is assigned (S2.3: a named owner)."""

    check: Literal["assignee"]


class PriorityGuard(GuardBase):
    """The issue carries a priority (S1.3)."""

    check: Literal["priority-set"]


class LabelGuard(GuardBase):
    """A label is present, such as an approval or a customer confirmation.

    With `by` or `not_by`, it also says who may add the label: a label added by anyone else is
    removed at once, with a comment that says why (four eyes for `plan/approved`, S2.2). The names
    are teams of the policy's `teams:` or the built-ins (`reporter`, `assignee`, `author-of-plan`,
    `team-members`). A label sopguard adds itself, for a command its user may give, stays.
    """

    check: Literal["label"]
    label: str
    by: PeopleNames = Field(default_factory=list, description="Only these people may add the label.")
    not_by: PeopleNames = Field(
        default_factory=list, description="These people may not add the label, even when in `by`."
    )


class NoLabelGuard(GuardBase):
    """A label is absent, such as a scope change that needs the customer's confirmation first."""

    check: Literal["no-label"]
    label: str


class ChecklistGuard(GuardBase):
    """Every subtask of a checklist exists and is done."""

    check: Literal["checklist-done"]
    checklist: Ident


class SectionGuard(GuardBase):
    """The issue body or a comment has a section with one of these headings (a plan, a root cause).

    With `by` or `not_by`, it also says who may write the section: one in a comment counts when
    its author is allowed; one in the issue's own text when whoever sopguard saw put it there is
    (who opened the issue with it, or the last to edit it in); one there before sopguard saw it
    written counts. The names are those of a label guard's `by`.
    """

    check: Literal["section"]
    headings: list[str] = Field(min_length=1)
    by: PeopleNames = Field(default_factory=list, description="Only a section these people wrote counts.")
    not_by: PeopleNames = Field(
        default_factory=list, description="A section these people wrote does not count, even when in `by`."
    )

    @property
    def restricted(self) -> bool:
        return bool(self.by or self.not_by)


Guard = Annotated[
    IntakeGuard | AssigneeGuard | PriorityGuard | LabelGuard | NoLabelGuard | ChecklistGuard | SectionGuard,
    Field(discriminator="check"),
]


_USE_SCHEMA = {
    "type": "object",
    "properties": {"use": {**_IDENT_SCHEMA, "description": "A guard set of `workflow.guard_sets`."}},
    "required": ["use"],
    "additionalProperties": False,
    SHORTHAND: True,
}


def _guards_may_use_sets(schema: dict[str, Any]) -> None:
    """In the JSON Schema, a transition's guard may also be `{use: <guard set>}`."""
    guards = schema["properties"]["guards"]
    guards["items"] = {"anyOf": [guards["items"], _USE_SCHEMA]}


def _sets_may_use_sets(schema: dict[str, Any]) -> None:
    """In the JSON Schema, a guard set's guard may also be `{use: <another guard set>}`."""
    sets = schema["properties"]["guard_sets"]
    for pattern in sets.get("patternProperties", {}).values():
        pattern["items"] = {"anyOf": [pattern["items"], _USE_SCHEMA]}
    if isinstance(sets.get("additionalProperties"), dict):
        sets["additionalProperties"]["items"] = {
            "anyOf": [sets["additionalProperties"]["items"], _USE_SCHEMA]
        }


class Transition(Rule):
    model_config = ConfigDict(**Strict.model_config, json_schema_extra=_guards_may_use_sets)

    from_: list[Ident] = Field(alias="from", min_length=1)
    to: Ident
    guards: list[Guard] = Field(
        default_factory=list, description="Guards, or `{use: name}` for every guard of a guard set."
    )


def _valid_guards(guards: list[Any]) -> bool:
    """Whether a guard set validates: one that does not is reported where it is defined, once."""
    try:
        TypeAdapter(list[Guard]).validate_python(guards)
    except ValidationError:
        return False
    return True


def _used(guard: Any) -> str | None:
    """The set a `{use: name}` entry names; `None` for a guard."""
    return str(guard["use"]) if isinstance(guard, dict) and set(guard) == {"use"} else None


def _unknown_set(name: str, sets: dict[str, Any]) -> ValueError:
    return ValueError(f"unknown guard set '{name}' (known: {', '.join(sorted(sets)) or 'none defined'})")


def _expanded(guards: list[Any], sets: dict[str, Any], guards_of: Callable[[str], list[Any]]) -> list[Any]:
    """The guards with each `{use: name}` replaced by that set's guards (`guards_of(name)`) where
    they validate: a set that does not is reported where it is defined, once."""
    expanded: list[Any] = []
    for guard in guards:
        used = _used(guard)
        if used is None:
            expanded.append(guard)
        elif isinstance(sets.get(used), list):
            of_set = guards_of(used)
            expanded.extend(of_set if _valid_guards(of_set) else [])
        else:
            raise _unknown_set(used, sets)
    return expanded


def _resolved_sets(sets: dict[str, Any]) -> dict[str, Any]:
    """Each guard set with the sets it uses (`{use: name}` among its guards) put in their place."""
    resolved: dict[str, Any] = {}

    def resolve(name: str, using: tuple[str, ...]) -> Any:
        if name in using:
            raise ValueError(f"guard set '{name}' uses itself (through {' -> '.join((*using, name))})")
        if name not in resolved:
            guards = sets[name]
            if not isinstance(guards, list):
                return guards
            resolved[name] = _expanded(guards, sets, lambda used: resolve(used, (*using, name)))
        return resolved[name]

    for name in sets:
        resolve(name, ())
    return resolved


def _expand_guard_sets(data: Any) -> Any:
    """`{use: name}` among a transition's guards (or a set's) stands for the guards of that set, in
    order."""
    if not isinstance(data, dict) or not isinstance(data.get("guard_sets"), dict):
        return data
    sets = _resolved_sets(data["guard_sets"])
    transitions = []
    for transition in data.get("transitions") or []:
        guards = transition.get("guards") if isinstance(transition, dict) else None
        if not isinstance(guards, list):
            transitions.append(transition)
            continue
        transitions.append({**transition, "guards": _expanded(guards, sets, sets.__getitem__)})
    return {**data, "guard_sets": sets, "transitions": transitions}


class Workflow(Strict):
    model_config = ConfigDict(**Strict.model_config, json_schema_extra=_sets_may_use_sets)

    initial: Ident = Field(description="The state of an issue that has no status yet.")
    guard_sets: dict[Ident, list[Guard]] = Field(
        default_factory=dict,
        description="Guards named once and used on several transitions (or in another set) with "
        "`{use: name}`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _use_guard_sets(cls, data: Any) -> Any:
        return _expand_guard_sets(data)

    states: list[State] = Field(min_length=2)
    transitions: list[Transition] = Field(min_length=1)
    rule: Rule = Field(
        description="The lifecycle rule: cited when a change of state is not one of the transitions."
    )
    plan_headings: list[str] = Field(
        default_factory=lambda: ["Plan", "Service plan", "服务方案"],
        min_length=1,
        description="The headings of a service plan section (S2.2): who wrote it is `author-of-plan`.",
    )

    def state(self, state_id: str) -> State | None:
        return next((s for s in self.states if s.id == state_id), None)

    def transitions_from(self, state_id: str) -> list[Transition]:
        return [t for t in self.transitions if state_id in t.from_]

    def transition(self, source: str, target: str) -> Transition | None:
        return next((t for t in self.transitions_from(source) if t.to == target), None)


class PlanChanges(Rule):
    """S3.2: a change of an approved plan needs approval again. An edit of the plan section (or a
    new one) while `approval_label` is on removes it and adds `changed_label`, which a guard can
    keep the issue from moving on with; the approval command removes it again."""

    approval_label: str = "plan/approved"
    changed_label: str = "plan/changed"
    waiver_labels: list[str] = Field(
        default_factory=list,
        description="Labels that waive the plan's review (an approver's `risk/low`): withdrawn too, "
        "with `changed_label` added, when the plan changes, for they judged the plan before.",
    )


class RestrictedLabel(Rule):
    """A label only some people may add, though no guard asks for it: a judgement that waives a
    guard (`unless_label`), such as an approver's `risk/low`. Added by anyone else, it is removed
    at once (in `enforce` mode) with a comment that says why, and counts for nothing meanwhile."""

    label: str
    by: PeopleNames = Field(default_factory=list, description="Only these people may add the label.")
    not_by: PeopleNames = Field(
        default_factory=list, description="These people may not add the label, even when in `by`."
    )
    requirement: Text = Field(description="Who may add it and why, as told to whoever may not.")

    @model_validator(mode="after")
    def _someone_named(self) -> RestrictedLabel:
        if not self.by and not self.not_by:
            raise ValueError("give `by` or `not_by`: who may add the label, or who may not")
        return self


# --- commands -------------------------------------------------------------------------------


class Command(Rule):
    """A slash command in a comment (`/approve-plan`), in the manner of Prow's plugins.

    Given by someone `by` allows (and `not_by` does not), in one of the `from` states (any open
    state when empty), with its arguments (`choices`, then a `date`, then a quoted `reason`, as
    asked), it changes the labels and the stage as said; it is answered with a reaction on GitHub
    (a short comment on Jira) or, when refused, a short comment why. A label it adds stays, even
    one that a guard lets only some people add: the command's own `by` is the check.
    """

    name: Ident = Field(description="The command without its slash: `approve-plan` for /approve-plan.")
    by: PeopleNames = Field(default_factory=list, description="Only these people may give it.")
    not_by: PeopleNames = Field(default_factory=list, description="These people may not give it.")
    from_: list[Ident] = Field(
        default_factory=list, alias="from", description="The stages it may be given in (empty: any open one)."
    )
    choices: list[Ident] = Field(
        default_factory=list, description="Its first argument is one of these (`/cancel duplicate`)."
    )
    date: bool = Field(default=False, description="An argument is a date, YYYY-MM-DD (`/delay 2026-12-20`).")
    reason: bool = Field(default=False, description='A quoted reason is required (`/reject "..."`).')
    add_labels: list[str] = Field(
        default_factory=list, description="Labels it adds; `{choice}` stands for the choice given."
    )
    remove_labels: list[str] = Field(default_factory=list, description="Labels it removes.")
    to: Ident | None = Field(default=None, description="The stage it moves the issue to.")
    delay_notice: bool = Field(
        default=False, description="It tells the customer of a delay (S3.3): recorded as a delay notice."
    )


# --- intake ---------------------------------------------------------------------------------


class GithubFieldSource(Strict):
    heading: str = Field(description="The issue-form field label, rendered as `### heading`.")
    multiline: bool = Field(default=False, description="A text area in the exported issue form.")


class JiraFieldSource(Strict):
    field: str = Field(description="A Jira field name (`Customer`) or id (`customfield_10010`).")


class Option(Strict):
    """An allowed value as the tracker holds it, and how comments name it in each locale."""

    value: str
    title: Text | None = Field(default=None, description="How comments name it (default: the value).")

    def shown(self, locale: Locale) -> str:
        return self.title.get(locale) if self.title else self.value


def _option(value: Any) -> Any:
    """A bare string is an option whose value is also its title in every locale."""
    return {"value": value} if isinstance(value, str) else value


class IntakeField(Strict):
    id: Ident
    title: Text
    required: bool = True
    options: list[Annotated[Option, BeforeValidator(_option)]] = Field(
        default_factory=list,
        description="Allowed values (`Minor`, or `{value: Minor, title: {en: Minor, zh-CN: 轻微影响}}`); "
        "an issue form shows them as a dropdown.",
    )
    github: GithubFieldSource
    jira: JiraFieldSource

    @property
    def values(self) -> list[str]:
        """The allowed values, as the tracker holds them."""
        return [option.value for option in self.options]

    def option(self, value: str) -> Option | None:
        """The option `value` is (in any case, as the priority matrix compares them)."""
        folded = value.casefold()
        return next((o for o in self.options if o.value.casefold() == folded), None)


class Intake(Rule):
    needs_info_label: str = "needs-info"
    fields: list[IntakeField] = Field(min_length=1)

    def field(self, field_id: str) -> IntakeField | None:
        return next((f for f in self.fields if f.id == field_id), None)


# --- priority -------------------------------------------------------------------------------


class Priority(Rule):
    levels: list[PriorityLevel] = Field(min_length=1, description="Highest first: P1, P2, ...")
    impact_field: Ident
    urgency_field: Ident
    tier_field: Ident
    top_tiers: list[str] = Field(
        min_length=1, description="Customer tiers whose priority is raised one level (never above the top)."
    )
    matrix: dict[str, dict[str, PriorityLevel]] = Field(
        description="impact -> urgency -> level, before the tier raise."
    )


# --- checklists -----------------------------------------------------------------------------


class ChecklistItem(Text):
    """An item's text; with `by`/`not_by`, also who may close it (the names of label guards): an
    item closed by anyone else is not done (S3.1, S4.1, S4.2)."""

    by: PeopleNames = Field(default_factory=list, description="Only these people may close the item.")
    not_by: PeopleNames = Field(
        default_factory=list, description="These people may not close the item, even when in `by`."
    )

    @property
    def restricted(self) -> bool:
        return bool(self.by or self.not_by)


class Checklist(Rule):
    title: Text
    items: list[ChecklistItem] = Field(min_length=1)


# --- SLA ------------------------------------------------------------------------------------

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HOURS_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _hours_range(value: str) -> str:
    """`09:00-18:00`: a start and an end within one day (the end may be 24:00, midnight after)."""
    match = _HOURS_RANGE.match(value)
    if match is None:
        raise ValueError(
            f"'{value}' is not a range of working hours; write it as HH:MM-HH:MM, such as 09:00-18:00"
        )
    start_hour, start_minute, end_hour, end_minute = (int(part) for part in match.groups())
    for hour, minute, latest in ((start_hour, start_minute, 23), (end_hour, end_minute, 24)):
        if hour > latest or minute > 59 or (hour == 24 and minute):
            raise ValueError(
                f"'{value}': {hour:02d}:{minute:02d} is not a time of day (hours 00-23 and minutes 00-59; "
                "24:00 may end a range at midnight)"
            )
    if end_hour * 60 + end_minute <= start_hour * 60 + start_minute:
        raise ValueError(
            f"'{value}' ends before it starts; an overnight shift is two ranges, one on each day "
            f"(such as {start_hour:02d}:{start_minute:02d}-24:00 and 00:00-{end_hour:02d}:{end_minute:02d})"
        )
    return f"{start_hour:02d}:{start_minute:02d}-{end_hour:02d}:{end_minute:02d}"


HoursRange = Annotated[
    str,
    AfterValidator(_hours_range),
    Field(
        description="Working hours within one day, HH:MM-HH:MM (24:00 ends at midnight).",
        json_schema_extra={"pattern": r"^([01]?\d|2[0-3]):[0-5]\d-(([01]?\d|2[0-3]):[0-5]\d|24:00)$"},
    ),
]


class HolidaySource(Strict):
    country: str = Field(description="ISO 3166 country code understood by the holidays library.")
    subdivision: str | None = None


class Calendar(Strict):
    id: Ident
    timezone: TimeZoneName
    working_hours: dict[Weekday, list[HoursRange]] = Field(
        default_factory=dict, description="Empty means 24x7."
    )
    holidays: HolidaySource | None = None
    extra_holidays: list[dt.date] = Field(default_factory=list)
    extra_working_days: list[dt.date] = Field(
        default_factory=list, description="Make-up working days (e.g. China's 调休 weekends)."
    )

    @model_validator(mode="after")
    def _some_hours(self) -> Calendar:
        if self.working_hours and not any(self.working_hours.values()):
            raise ValueError("working_hours gives no hours on any day; leave it out for a 24x7 calendar")
        return self


_TARGET_TITLES = {
    "first-response": {"en": "first response", "zh-CN": "首次响应"},
    "resolution": {"en": "resolution", "zh-CN": "解决"},
}


class SlaTarget(Rule):
    kind: Literal["first-response", "resolution"]
    title: Text | None = Field(
        default=None, description="How comments name the target (default: first response / resolution)."
    )

    @property
    def name(self) -> Text:
        return self.title or Text.model_validate(_TARGET_TITLES[self.kind])

    calendar: Ident | None = Field(default=None, description="No calendar means 24x7.")
    warn_at: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [0.75, 1.0])
    by_priority: dict[PriorityLevel, Duration]


class DelayNotice(Rule):
    """A comment with one of these headings, by someone `by` allows (and `not_by` does not), tells
    the customer of a delay (S3.3): recorded when it is public, before the resolution deadline,
    with a new date and a reason; otherwise answered with why it does not count. Anyone else's
    section is no notice: audited as such, never answered."""

    headings: list[str] = Field(min_length=1)
    by: PeopleNames = Field(
        default_factory=lambda: [TEAM_MEMBERS],
        description="Only these people give delay notices (default: the service team, as `/delay`).",
    )
    not_by: PeopleNames = Field(default_factory=list, description="These people give no delay notice.")


class Sla(Strict):
    receipt: Rule | None = Field(
        default=None, description="Confirm receipt with priority, next step and deadlines (S1.4)."
    )
    delay_notice: DelayNotice | None = Field(
        default=None, description="How a delay notice is recognised (S3.3)."
    )
    satisfaction: Rule | None = Field(
        default=None, description="On close, ask the reporter to rate the service with a reply of 1-5 (S5.2)."
    )
    pause_states: list[Ident] = Field(default_factory=list)
    calendars: list[Calendar] = Field(default_factory=list)
    targets: list[SlaTarget] = Field(min_length=1)
    escalation: dict[Literal["github", "jira"], str] = Field(
        default_factory=dict, description="Who is mentioned at breach, per tracker (e.g. @acme/leads)."
    )
    breach_label: str = Field(default="sla/breached", description="The label a breached issue gets.")
    low_rating_label: str = Field(
        default="satisfaction/low", description="The label of an issue rated 2 or less (S5.2)."
    )
    responders: PeopleNames = Field(
        default_factory=list,
        description="Whose public comment is the first response (S1.4); empty: anyone but the reporter.",
    )


# --- trackers -------------------------------------------------------------------------------


class GithubMapping(Strict):
    status_label_prefix: str = "status/"
    priority_label_prefix: str = "priority/"
    checklist_label: str = "sop-checklist"
    closed_states: list[Ident] = Field(default_factory=lambda: ["closed"])

    def status_label(self, state_id: str) -> str:
        return f"{self.status_label_prefix}{state_id}"

    def priority_label(self, level: str) -> str:
        return f"{self.priority_label_prefix}{level}"


Visibility = Literal["public", "internal"]

# Who reads each kind of comment on a Jira Service Management project when the policy does not say:
# what is written for the customer is public (the portal shows it); what is written for the team
# (SLA warnings, escalations, undo explanations, reviews, answers to agents) is internal.
DEFAULT_VISIBILITY: Mapping[str, Visibility] = {
    "receipt": "public",
    "intake-missing": "public",
    "satisfaction": "public",
    "transition-rejected": "internal",
    "priority-set": "internal",
    "priority-override": "internal",
    "checklist-created": "internal",
    "sla-warning": "internal",
    "sla-breached": "internal",
    "label-refused": "internal",
    "command-answer": "internal",
    "plan-changed": "internal",
    "low-rating": "internal",
    "status-unmapped": "internal",
    "delay-refused": "internal",
}


class ServiceDesk(Strict):
    """How sopguard works on a Jira Service Management project (its `projectTypeKey` is
    `service_desk`); on any other project these settings change nothing."""

    comments: dict[Ident, Visibility] = Field(
        default_factory=dict,
        description="Who reads each comment: by the kind of comment (a template of `messages`, such as "
        "`sla-warning`) or by the id of the rule that posts it (`command-delay`), `public` (the customer "
        "too, on the portal) or `internal` (the team only). A rule id wins over a kind; unlisted kinds "
        "keep the defaults (receipt, intake-missing and satisfaction public, the rest internal).",
    )
    unlisted: Visibility = Field(
        default="internal",
        description="Who reads a kind of comment that neither this policy nor the defaults name.",
    )
    organizations: dict[str, str] = Field(
        default_factory=dict,
        description="Customer organization name -> customer tier (a value of the priority's tier field), "
        "used when the request itself gives no tier (S1.3).",
    )
    request_types: dict[str, dict[Ident, str]] = Field(
        default_factory=dict,
        description="Request type name -> intake field id -> value: what a request of that type says "
        "by being of it (e.g. `Report an outage: {impact: Business outage}`), used where the request "
        "leaves the field empty (S1.2).",
    )

    def visibility(self, kind: str, rule_id: str = "") -> Visibility:
        """Who reads a comment of `kind` posted for `rule_id`: the rule's own entry, the kind's, the default."""
        if rule_id in self.comments:
            return self.comments[rule_id]
        return self.comments.get(kind) or DEFAULT_VISIBILITY.get(kind) or self.unlisted


class JiraMapping(Strict):
    statuses: dict[Ident, list[str]] = Field(description="SOP state -> the Jira status names that mean it.")
    priorities: dict[PriorityLevel, str] = Field(description="Level -> Jira priority name.")
    priority_label_prefix: str = "priority-"
    subtask_issue_type: str = "Sub-task"
    service_desk: ServiceDesk = Field(
        default_factory=ServiceDesk,
        description="Jira Service Management: which comments the customer reads, organizations and "
        "request types.",
    )


class Trackers(Strict):
    github: GithubMapping = Field(default_factory=GithubMapping)
    jira: JiraMapping


# --- adoption -------------------------------------------------------------------------------


def _midnight_utc(value: Any) -> Any:
    """A date (`2026-01-01`, as YAML reads it) is its midnight, UTC."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), dt.UTC)
    return value


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


Instant = Annotated[dt.datetime, BeforeValidator(_midnight_utc), AfterValidator(_aware)]


class Adoption(Strict):
    """Which issues sopguard applies to. An issue outside is never touched (its deliveries are
    audited as "outside adoption"); one inside that sopguard first meets mid-life is adopted as it
    stands: its state read from its labels or status, nothing undone, nothing posted.

    With no criterion every issue is inside. With several, `require` says whether an issue must
    meet any one of them (the default) or all. Membership is decided when sopguard first meets an
    issue; once followed, an issue stays followed.
    """

    created_after: Instant | None = Field(
        default=None, description="Issues created at or after this instant (a date means its midnight, UTC)."
    )
    labels: list[str] = Field(default_factory=list, description="Issues carrying any of these labels.")
    issue_types: list[str] = Field(
        default_factory=list,
        description="Issues of any of these types (GitHub issue types, Jira issue types; any case).",
    )
    form: bool = Field(
        default=False,
        description="GitHub issues filed through the generated issue form (every intake heading in the body).",
    )
    require: Literal["any", "all"] = "any"
    intake_for_adopted: bool = Field(
        default=False,
        description="Demand the intake fields (S1.2) of adopted issues too, on their later edits.",
    )

    @property
    def criteria(self) -> int:
        return sum((self.created_after is not None, bool(self.labels), bool(self.issue_types), self.form))


# --- messages -------------------------------------------------------------------------------

MessageKind = Literal[
    "transition-rejected",
    "intake-missing",
    "priority-set",
    "priority-override",
    "checklist-created",
    "sla-warning",
    "sla-breached",
    "receipt",
    "satisfaction",
    "label-refused",
    "command-answer",
    "plan-changed",
    "low-rating",
    "status-unmapped",
    "delay-refused",
]


class Messages(Strict):
    """Jinja2 templates per kind of comment; the variables each receives are in the README."""

    templates: dict[MessageKind, Text]


# --- the file -------------------------------------------------------------------------------


class ScopeMatch(Strict):
    github: str | None = Field(default=None, description="`owner/name`, glob allowed (`acme/*`).")
    jira: str | None = Field(default=None, description="A Jira project key, glob allowed.")
    request_type: str | None = Field(
        default=None,
        description="With `jira`: only the Jira Service Management requests of this request type "
        "(its name, glob allowed, any case).",
    )

    @model_validator(mode="after")
    def _one_tracker(self) -> ScopeMatch:
        if (self.github is None) == (self.jira is None):
            raise ValueError("give exactly one of `github` or `jira`")
        if self.request_type is not None and self.jira is None:
            raise ValueError("`request_type` is a Jira Service Management one: give it with `jira`")
        return self

    def matches(self, source: str, scope: str, request_type: str = "") -> bool:
        pattern = self.github if source == "github" else self.jira
        if pattern is None or not fnmatchcase(scope, pattern):
            return False
        wanted = self.request_type
        return wanted is None or fnmatchcase(request_type.casefold(), wanted.casefold())


class Scope(Strict):
    """Overrides for some repositories or projects: a section given here replaces the default's,
    except `rule_modes` and message templates, which are added to the default's one by one."""

    match: ScopeMatch
    mode: Mode | None = None
    locale: Locale | None = None
    rule_modes: dict[Ident, Mode] = Field(default_factory=dict)
    intake: Intake | None = None
    priority: Priority | None = None
    sla: Sla | None = None
    trackers: Trackers | None = None
    messages: Messages | None = None
    adoption: Adoption | None = None


class Policy(Strict):
    version: Literal[1] = 1
    mode: Mode = Mode.ENFORCE
    locale: Locale = "en"
    rule_modes: dict[Ident, Mode] = Field(
        default_factory=dict, description="Per-rule modes by rule id; a scope can add its own."
    )
    sop_clauses: dict[SopClause, Text] = Field(description="Short text of each clause, for comments.")
    workflow: Workflow
    intake: Intake
    priority: Priority
    teams: dict[Ident, Team] = Field(
        default_factory=dict, description="Named groups of people that guards and commands refer to."
    )
    commands: list[Command] = Field(default_factory=list, description="Slash commands in comments.")
    plan_changes: PlanChanges | None = Field(
        default=None, description="Withdraw the approval of a plan that is changed (S3.2)."
    )
    restricted_labels: list[RestrictedLabel] = Field(
        default_factory=list,
        description="Labels only some people may add, though no guard asks for them (an approver's risk/low).",
    )
    checklists: list[Checklist] = Field(default_factory=list)
    sla: Sla
    trackers: Trackers
    messages: Messages
    adoption: Adoption = Field(
        default_factory=Adoption, description="Which issues sopguard applies to; by default every one."
    )
    scopes: list[Scope] = Field(default_factory=list)

    def for_issue(self, source: str, scope: str, request_type: str = "") -> Policy:
        """The policy in force for one repository or project (and, on Jira Service Management, one
        request type): the first matching scope applied."""
        override = next((s for s in self.scopes if s.match.matches(source, scope, request_type)), None)
        if override is None:
            return self
        return self.model_copy(update={**apply_scope(dict(self), override), "scopes": []})

    def checklist(self, checklist_id: str) -> Checklist | None:
        return next((c for c in self.checklists if c.id == checklist_id), None)

    def command(self, name: str) -> Command | None:
        return next((c for c in self.commands if c.name == name), None)

    def team(self, name: str) -> Team | None:
        """A team of `teams:`; `team-members`, when the policy does not define it, is the default."""
        return self.teams.get(name) or (DEFAULT_TEAM_MEMBERS if name == TEAM_MEMBERS else None)

    def mode_of(self, rule: Rule) -> Mode:
        """The more cautious of the global mode and the rule's own (`off` < `warn` < `enforce`)."""
        own = self.rule_modes.get(rule.id) or rule.mode or Mode.ENFORCE
        return min(own, self.mode, key=_CAUTION.index)

    def clause(self, sop: str) -> str:
        text = self.sop_clauses.get(sop)
        return text.get(self.locale) if text else ""


def apply_scope(sections: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
    """Policy sections with a scope's overrides applied (see `Scope`)."""
    changes = {
        name: value for name, value in scope if name not in ("match", "rule_modes") and value is not None
    }
    base_messages = sections.get("messages")
    if scope.messages is not None and isinstance(base_messages, Messages):
        changes["messages"] = Messages(templates={**base_messages.templates, **scope.messages.templates})
    return {**sections, **changes, "rule_modes": {**sections.get("rule_modes", {}), **scope.rule_modes}}
