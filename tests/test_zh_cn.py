"""Natural zh-CN: every comment, audit reason and catalogue message of the default policy in
Chinese reads as Chinese: full-width punctuation next to Chinese text, no nested parentheses,
durations and dates as Chinese writes them (never `3 min` or `50 h 44 min`), and option values and
stage names by their Chinese titles.

Comments are checked twice: every template with every branch taken and realistic Chinese values,
and the comments and audit reasons the engine and the SLA notices make on real events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract
from babel.messages.pofile import read_po
from click.testing import CliRunner

from cli import main
from config import i18n
from config.loader import load_policy
from config.schema import MessageKind, Mode
from config.templates import KIND_VARIABLES, Markdown
from policies.engine import evaluate
from policies.ledger import IssueFacts
from policies.models import Comment, Decision, Event, EventKind, IssueSnapshot, PostComment, RuleResult
from policies.render import render
from policies.sla import Created, read_clocks, rules_for
from policies.sla_notices import due_notices
from tests.engine_support import GITHUB_REF, NOW, PERSON, complete_fields, move, snapshot_meeting

ROOT = Path(__file__).parents[1]
ZH = load_policy().model_copy(update={"locale": "zh-CN"})
SHANGHAI = ZoneInfo("Asia/Shanghai")

_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_HALF_WIDTH_NEXT_TO_CJK = re.compile(rf"[{_CJK}][,.:;!?()]|[,:;!?()][{_CJK}]")
_ENGLISH_UNIT = re.compile(
    r"\d\s*(?:min|mins|minutes?|h|hrs?|hours?|d|days?|s|secs?|seconds?)\b|\b(?:AM|PM)\b", re.IGNORECASE
)
_CODE = re.compile(r"`[^`]*`")


def problems(text: str) -> list[str]:
    """What keeps Chinese text from reading naturally; code spans are the tracker's, left out."""
    prose = _CODE.sub("`…`", text)
    found = [f"half-width {m.group()!r}" for m in _HALF_WIDTH_NEXT_TO_CJK.finditer(prose)]
    found += [f"English unit {m.group()!r}" for m in _ENGLISH_UNIT.finditer(prose)]
    depth = 0
    for character in prose:
        depth += {"（": 1, "）": -1}.get(character, 0)
        if depth > 1:
            found.append("nested parentheses")
            break
    if "此问题" in prose:
        found.append("此问题 where service desks say 工单")
    return found


def test_the_check_finds_what_the_issue_reported() -> None:
    assert problems("尚缺:已指定责任人")
    assert problems("剩余工作时间 3 min。")
    assert problems("已超时 50 h 44 min")
    assert problems("（规则（S2.2））")
    assert problems("将此问题从 **新建** 移至 **已关闭**。")
    assert not problems(
        "在评论中写 `### 延期说明` 一节（规则 `owner-assigned`，SOP S2.3：将任务明确分派给责任人。）"
    )


# --- the catalogue of the policy's own words ---------------------------------------------------


def _english_titles() -> set[str]:
    """Stage names, field names and option values that have another title in Chinese."""
    texts = [s.title for s in ZH.workflow.states] + [f.title for f in ZH.intake.fields]
    texts += [o.title for f in ZH.intake.fields for o in f.options if o.title]
    return {t.en for t in texts if t.zh_cn and t.zh_cn != t.en and len(t.en) > 1}


def english_left(text: str) -> list[str]:
    """English titles in a Chinese comment, but for the value to enter, given after its Chinese
    title where a field must be corrected (`重点客户（Key）`)."""
    values = {o.value for f in ZH.intake.fields for o in f.options}
    text = re.sub("（([^）]*)）", lambda m: "" if m[1] in values else m[0], text)
    return [title for title in _english_titles() if title in text]


def test_every_stage_field_and_option_of_the_default_policy_has_a_chinese_title() -> None:
    assert all(s.title.zh_cn for s in ZH.workflow.states)
    assert all(f.title.zh_cn for f in ZH.intake.fields)
    assert all(o.title and o.title.zh_cn for f in ZH.intake.fields for o in f.options)


def test_the_policy_text_in_chinese_reads_naturally() -> None:
    texts = {f"clause {k}": v.zh_cn for k, v in ZH.sop_clauses.items()}
    texts |= {f"guard {g.id}": g.requirement.zh_cn for t in ZH.workflow.transitions for g in t.guards}
    texts |= {f"checklist {c.id}": i.zh_cn for c in ZH.checklists for i in c.items}
    texts |= {f"field {f.id}": f.title.zh_cn for f in ZH.intake.fields}
    assert all(texts.values())
    assert {name: problems(text or "") for name, text in texts.items() if problems(text or "")} == {}
    # A clause is quoted inside parentheses in comments: it has none of its own.
    assert [k for k, v in ZH.sop_clauses.items() if "（" in (v.zh_cn or "")] == []


# --- every template, every branch, realistic Chinese values -------------------------------------


def _state(state_id: str) -> Markdown:
    state = ZH.workflow.state(state_id)
    assert state is not None
    return Markdown(state.title.get("zh-CN"))


def _option(field_id: str, index: int) -> Markdown:
    field = ZH.intake.field(field_id)
    assert field is not None
    return Markdown(field.options[index].shown("zh-CN"))


def _guard_violations() -> list[dict[str, Any]]:
    start = ZH.workflow.transition("triage", "diagnosis")
    assert start is not None
    fields = [Markdown(f.title.get("zh-CN")) for f in ZH.intake.fields[:2]]
    return [
        {
            "rule_id": Markdown(g.id),
            "sop": Markdown(g.sop),
            "clause": Markdown(ZH.clause(g.sop)),
            "requirement": Markdown(g.requirement.get("zh-CN")),
            "details": fields if g.check == "intake-complete" else [],
        }
        for g in start.guards
    ]


def _zh_values() -> dict[MessageKind, dict[str, tuple[Any, ...]]]:
    """Each kind's variables as the engine passes them for the Chinese default policy."""
    planning = ZH.workflow.state("planning")
    assert planning is not None
    skipped = {
        "title": _state("planning"),
        "sop": Markdown(planning.sop),
        "clause": Markdown(ZH.clause("S2.2")),
    }
    deadline = Markdown(i18n.instant(dt.datetime(2026, 11, 24, 10, 15, tzinfo=SHANGHAI), "zh-CN"))
    reason = {
        "level": Markdown("P2"),
        "impact": _option("impact", 1),
        "urgency": _option("urgency", 0),
        "tier": _option("customer-tier", 1),
        "raised": True,
    }
    tier = ZH.intake.field("customer-tier")
    assert tier is not None
    choices = [
        Markdown(i18n.say("zh-CN", "%(title)s (%(value)s)", title=o.shown("zh-CN"), value=o.value))
        for o in tier.options
    ]
    targets = [Markdown(t.name.get("zh-CN")) for t in ZH.sla.targets]
    start = ZH.workflow.transition("planning", "in-progress")
    assert start is not None
    reviewed = next(g for g in start.guards if g.id == "high-risk-plan-reviewed")
    return {
        "transition-rejected": {
            "undone": (True, False),
            "actor": ("dana",),
            "from_state": (_state("triage"),),
            "to_state": (_state("in-progress"),),
            "entry_from": ([], [_state("planning"), _state("customer-confirmation")]),
            "skipped": ([], [skipped]),
            "violations": ([], _guard_violations()),
            "allowed": ([], [_state("diagnosis"), _state("waiting-for-customer")]),
        },
        "intake-missing": {
            "missing": ([], [Markdown(f.title.get("zh-CN")) for f in ZH.intake.fields[:3]]),
            "invalid": (
                [],
                [{"field": Markdown(tier.title.get("zh-CN")), "value": "Gold", "options": choices}],
            ),
        },
        "priority-set": {
            "level": (Markdown("P2"),),
            "impact": (_option("impact", 1),),
            "urgency": (_option("urgency", 0),),
            "tier": (_option("customer-tier", 1), Markdown("-")),
            "raised": (True, False),
            "applied": (True, False),
        },
        "priority-override": {
            "level": (Markdown("P1"),),
            "actor": ("dana",),
            "computed": (Markdown(""), Markdown("P3"), Markdown("P1")),
        },
        "checklist-created": {
            "checklist": (Markdown("自我检查"),),
            "item_kind": ("sub-issue", "sub-task"),
            "items": ([Markdown(i.get("zh-CN")) for c in ZH.checklists[:1] for i in c.items],),
            "created": (True, False),
        },
        "sla-warning": {
            "target": tuple(targets),
            "kind": ("first-response", "resolution"),
            "level": (Markdown("P1"),),
            "deadline": (deadline,),
            "who": (Markdown(""), Markdown("@dana")),
            "percent": (Markdown(i18n.percent(0.75, "zh-CN")),),
            "remaining": tuple(Markdown(i18n.duration(dt.timedelta(minutes=m), "zh-CN")) for m in (3, 3044)),
        },
        "sla-breached": {
            "target": tuple(targets),
            "kind": ("first-response", "resolution"),
            "level": (Markdown("P2"),),
            "deadline": (deadline,),
            "who": (Markdown(""), Markdown("@dana")),
            "overdue": (Markdown(""), Markdown(i18n.duration(dt.timedelta(hours=50, minutes=44), "zh-CN"))),
            "escalation": (Markdown(""), Markdown("@acme/leads")),
            "delay_notice": (True, False),
            "new_date": (Markdown(""), Markdown(i18n.day(dt.date(2026, 12, 20), "zh-CN"))),
        },
        "delay-refused": {
            "actor": ("dana",),
            "problems": (["internal"], ["late", "no-date", "past-date", "no-reason"], []),
            "deadline": (Markdown(""), deadline),
            "new_date": (Markdown(""), Markdown(i18n.day(dt.date(2026, 11, 20), "zh-CN"))),
            "command": ("", "delay"),
        },
        "receipt": {
            "reason": (None, reason, {**reason, "tier": "", "raised": False}),
            "level": (Markdown("P2"),),
            "assumed": (True, False),
            "next_steps": ([], [_state("triage"), _state("waiting-for-customer")]),
            "deadlines": ([], [{"target": t, "deadline": deadline} for t in targets]),
        },
        "satisfaction": {"reporter": ("", "carol")},
        "status-unmapped": {
            "status": ("Backlog", "暂停"),
            "state": (_state("triage"),),
            "actor": ("dana",),
        },
        "label-refused": {
            "undone": (True, False),
            "actor": ("dana",),
            "label": ("plan/approved",),
            "by": ([], [Markdown("方案评审人")]),
            "not_by": ([], [Markdown("负责人"), Markdown("方案作者")]),
            "requirement": (Markdown(reviewed.requirement.get("zh-CN")),),
        },
        "command-answer": {
            "command": (Markdown("approve-plan"), Markdown("delay")),
            "actor": ("dana",),
            "problem": ("", "not-allowed", "not-now", "usage"),
            "by": ([], [Markdown("方案评审人")]),
            "not_by": ([], [Markdown("负责人"), Markdown("方案作者")]),
            "states": ([], [_state("planning"), _state("in-progress")]),
            "usage": (Markdown('/delay YYYY-MM-DD "reason"'),),
        },
        "plan-changed": {
            "actor": ("dana",),
            "approval_label": ("plan/approved",),
            "approved": (True, False),
            "waiver_labels": ([], ["risk/low"]),
            "changed_label": ("plan/changed",),
            "during_work": (True, False),
        },
        "low-rating": {"score": (1, 2), "escalation": (Markdown(""), Markdown("@acme/leads"))},
    }


def _combinations(kind: MessageKind) -> Iterator[dict[str, Any]]:
    values = _zh_values()[kind]
    assert set(values) == set(KIND_VARIABLES[kind]), "the test's values follow the catalogue"
    for chosen in itertools.product(*values.values()):
        yield dict(zip(values, chosen, strict=True))


@pytest.mark.parametrize("kind", get_args(MessageKind))
def test_every_template_reads_as_natural_chinese_in_every_branch(kind: MessageKind) -> None:
    rule = ZH.priority
    seen = set()
    for variables in _combinations(kind):
        text = render(ZH, kind, rule, **variables)
        if text in seen:
            continue
        seen.add(text)
        assert problems(text) == [], text
        assert english_left(text) == [], text
    assert seen


def test_the_duration_of_an_sla_notice_is_exact_to_the_minute() -> None:
    assert i18n.duration(dt.timedelta(hours=50, minutes=44, seconds=59), "zh-CN") == "50小时44分钟"
    assert i18n.duration(dt.timedelta(hours=50, minutes=44), "en") == "50 hours, 44 minutes"
    assert i18n.duration(dt.timedelta(minutes=3), "zh-CN") == "3分钟"
    assert i18n.duration(dt.timedelta(hours=2), "en") == "2 hours"
    assert i18n.duration(dt.timedelta(0), "en") == "0 minutes"


def test_deadlines_are_written_as_each_locale_writes_dates() -> None:
    due = dt.datetime(2026, 11, 24, 18, 0, tzinfo=SHANGHAI)
    assert i18n.instant(due, "zh-CN") == "2026年11月24日 18:00（中国时间）"
    assert i18n.instant(due, "en") == "Nov 24, 2026, 6:00\u202fPM (China Time)"
    assert i18n.instant(due.astimezone(dt.UTC), "zh-CN") == "2026年11月24日 10:00（UTC）"


# --- what the engine says on real events --------------------------------------------------------


def _opened(fields: dict[str, str], delivery: str) -> tuple[Event, IssueSnapshot]:
    event = Event(
        source="github",
        kinds=frozenset({EventKind.OPENED}),
        delivery_id=delivery,
        actor=PERSON,
        issue=GITHUB_REF,
        at=NOW,
    )
    return event, IssueSnapshot(ref=GITHUB_REF, fields=fields, reporter="carol", created_at=NOW)


def _decisions() -> list[Decision]:
    """Real engine calls that between them make every kind of comment but the SLA notices, and
    most kinds of audit reason."""
    complete = complete_fields(ZH, "github")
    tier = ZH.intake.field("customer-tier")
    assert tier is not None
    invalid = {**complete, tier.github.heading: "Gold"}
    warn = ZH.model_copy(update={"rule_modes": {ZH.priority.id: Mode.WARN}})
    decisions = [
        evaluate(ZH, *_opened({}, "opened-empty"), NOW),
        evaluate(ZH, *_opened(invalid, "opened-gold"), NOW),
        evaluate(ZH, *_opened(complete, "opened-complete"), NOW),
        evaluate(warn, *_opened(complete, "opened-warned"), NOW),
    ]
    label = ZH.trackers.github.priority_label("P1")
    chosen = Event(
        source="github",
        kinds=frozenset({EventKind.LABELS_CHANGED}),
        delivery_id="labeled-1",
        actor=PERSON,
        issue=GITHUB_REF,
        labels_after=frozenset({label}),
    )
    snapshot = IssueSnapshot(ref=GITHUB_REF, labels=frozenset({label}), fields=complete)
    decisions.append(evaluate(ZH, chosen, snapshot, NOW))
    decisions.append(move(ZH, "github", "triage", "diagnosis", IssueSnapshot(ref=GITHUB_REF))[0])
    decisions.append(move(ZH, "github", "new", "closed", IssueSnapshot(ref=GITHUB_REF))[0])
    for before, after in [("planning", "in-progress"), ("acceptance", "closed")]:
        transition = ZH.workflow.transition(before, after)
        assert transition is not None
        decisions.append(move(ZH, "github", before, after, snapshot_meeting(ZH, transition, "github"))[0])
    by_service = replace(_opened({}, "ours")[0], by_service=True)
    decisions.append(evaluate(ZH, by_service, IssueSnapshot(ref=GITHUB_REF), NOW))
    approved = frozenset({"plan/approved"})
    self_approval = replace(chosen, delivery_id="labeled-2", labels_after=approved)
    decisions.append(evaluate(ZH, self_approval, IssueSnapshot(ref=GITHUB_REF, labels=approved), NOW))
    said = replace(chosen, kinds=frozenset({EventKind.COMMENTED}), name="issue_comment.created")
    for number, (body, labels) in enumerate(
        [("/delay soon", frozenset()), ("/accept", frozenset()), ("### 服务方案\n\n另一种做法。", approved)]
    ):
        comment = replace(
            said, delivery_id=f"comment-{number}", comment=Comment(PERSON, body, id=f"c{number}")
        )
        decisions.append(evaluate(ZH, comment, IssueSnapshot(ref=GITHUB_REF, labels=labels), NOW))
    rated = replace(said, delivery_id="comment-rated", comment=Comment(PERSON, "1", id="c9"))
    closed = IssueSnapshot(ref=GITHUB_REF, is_open=False, reporter=PERSON.login)
    decisions.append(evaluate(ZH, rated, closed, NOW))
    return decisions


def _notices() -> list[PostComment]:
    start = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)  # Monday 09:00 in Shanghai
    timeline = (Created(at=start, state=ZH.workflow.initial, priority="P3"),)
    facts = IssueFacts(is_open=True, priority="P3", reporter="carol", assignees=("dana",), labels=frozenset())
    comments = []
    for late in (dt.timedelta(hours=3), dt.timedelta(days=10, hours=1, minutes=44)):
        clocks = read_clocks(rules_for(ZH.sla), timeline, start + late)
        for notice in due_notices(ZH, GITHUB_REF, facts, clocks, ()):
            assert not notice.failure
            comments += [a for a in notice.actions if isinstance(a, PostComment)]
    return comments


def test_the_engine_and_the_sla_notices_write_natural_chinese() -> None:
    comments = [a for d in _decisions() for a in d.actions if isinstance(a, PostComment)]
    comments += _notices()
    kinds = {c.marker.split(":", 1)[0] for c in comments}
    assert {
        "transition-rejected",
        "priority-set",
        "priority-override",
        "receipt",
        "satisfaction",
        "sla",
        "label-refused",
        "command",
        "plan-changed",
        "low-rating",
    } <= kinds
    for comment in comments:
        for body in filter(None, (comment.body, comment.body_if_not_undone)):
            assert problems(body) == [], body
            assert english_left(body) == [], body
    breached = next(c.body for c in comments if c.marker.endswith(":1"))
    assert "，已超时61小时44分钟（按工作时间计）。" in breached


def test_audit_reasons_are_in_the_policys_locale() -> None:
    decisions = _decisions()
    results: list[RuleResult] = [r for d in decisions for r in d.results]
    reasons = [reason for r in results for reason in r.reasons] + [d.note for d in decisions if d.note]
    assert len(reasons) > 10
    for reason in reasons:
        assert problems(reason) == [], reason
        assert re.search(f"[{_CJK}]", reason), f"not Chinese: {reason!r}"
    assert "由本服务自身引起，无需处理" in reasons
    assert any("不是可选值" in r for r in reasons)


# --- the catalogue ------------------------------------------------------------------------------

KEYWORDS = {"say": (2,), "say_plural": (2, 3), "tell": (1,), "marked": (1,)}
"""How the code marks its sentences: `say(locale, ...)`, `say_plural(locale, ...)`, `ctx.tell(...)`,
and `marked(...)` for one said later."""


def _messages_in_code() -> dict[str | tuple[str, ...], str]:
    found: dict[str | tuple[str, ...], str] = {}
    files = [ROOT / "cli.py", *sorted(ROOT.glob("config/*.py")), *sorted(ROOT.glob("policies/*.py"))]
    files += [*sorted(ROOT.glob("runtime/**/*.py")), *sorted(ROOT.glob("connector/**/*.py"))]
    for path in files:
        with path.open("rb") as source:
            for line, message, _, _ in extract("python", source, keywords=KEYWORDS):
                found.setdefault(message, f"{path.relative_to(ROOT)}:{line}")
    return found


def _catalogue() -> Any:
    po = resources.files("config").joinpath("locales", "zh_CN", "LC_MESSAGES", "sopguard.po")
    with po.open("rb") as source:
        return read_po(source, locale="zh_CN")


def test_every_message_of_the_code_is_translated_and_no_other() -> None:
    in_code = _messages_in_code()
    catalogue = _catalogue()
    translated = {m.id: m.string for m in catalogue if m.id}
    assert len(in_code) > 30
    assert sorted(map(str, set(in_code) - set(translated))) == [], "add these to sopguard.po"
    assert sorted(map(str, set(translated) - set(in_code))) == [], "no longer used: remove them"
    assert [
        m.id for m in catalogue if m.id and not all(m.string if isinstance(m.string, tuple) else (m.string,))
    ] == []


def test_every_translation_keeps_the_values_and_reads_naturally() -> None:
    name = re.compile(r"%\((\w+)\)[sr]")
    for message in _catalogue():
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = set(name.findall(ids[-1]))
        for text in strings:
            assert set(name.findall(text)) == expected, message.id
            assert problems(text) == [], text


# --- the command line ---------------------------------------------------------------------------


def test_validate_speaks_the_policys_language(tmp_path: Path) -> None:
    source = (ROOT / "config" / "sop.yaml").read_text(encoding="utf-8")
    chinese = tmp_path / "sop.zh.yaml"
    chinese.write_text(source.replace("\nlocale: en ", "\nlocale: zh-CN ", 1), encoding="utf-8")

    result = CliRunner().invoke(main, ["validate", str(chinese)])

    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith(f"{chinese}：有效（") and "个状态、" in line and "条规则" in line, line
    assert problems(line.removeprefix(str(chinese))) == []


def test_simulate_speaks_the_policys_language(tmp_path: Path) -> None:
    source = (ROOT / "config" / "sop.yaml").read_text(encoding="utf-8")
    chinese = tmp_path / "sop.zh.yaml"
    chinese.write_text(source.replace("\nlocale: en ", "\nlocale: zh-CN ", 1), encoding="utf-8")
    event = ROOT / "tests" / "fixtures" / "github" / "issues__opened.json"

    result = CliRunner().invoke(
        main, ["simulate", "--source", "github", "--event", str(event), "--policy", str(chinese)]
    )

    assert result.exit_code == 0, result.output
    assert "动作：" in result.stdout and "未通过" in result.stdout
    assert " on " not in result.stdout.splitlines()[0]


def test_an_option_is_a_bare_value_or_a_value_with_titles() -> None:
    impact = ZH.intake.field("impact")
    assert impact is not None
    bare = impact.model_validate(
        {**impact.model_dump(by_alias=True), "options": ["Minor", "Degraded service"]}
    )

    assert bare.values == ["Minor", "Degraded service"] and bare.options[0].shown("zh-CN") == "Minor"
    assert impact.values == ["Business outage", "Degraded service", "Minor"]
    assert impact.option("degraded SERVICE") == impact.options[1]
    assert (
        impact.options[1].shown("zh-CN") == "服务降级" and impact.options[1].shown("en") == "Degraded service"
    )
