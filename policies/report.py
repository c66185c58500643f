"""How well the targets were met (P4, S5.3): per scope and priority, from the ledger's timelines.

Pure: the caller reads the clocks (`policies.sla`) and passes them in; this counts, takes medians
and 90th percentiles of the working time each stopped clock took, and renders Markdown, CSV or
HTML (with a bar chart a manager can read at a glance, in plain SVG).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from policies.sla import ClockReading, Phase, Rated, TimelineEvent


@dataclass(frozen=True)
class IssueClocks:
    scope: str
    timeline: Sequence[TimelineEvent]
    clocks: Sequence[ClockReading]


@dataclass
class Target:
    met: int = 0
    breached: int = 0
    running: int = 0
    times: list[float] = field(default_factory=list)

    def add(self, clock: ClockReading) -> None:
        if clock.breached:
            self.breached += 1
        elif clock.phase is Phase.STOPPED:
            self.met += 1
        else:
            self.running += 1
        if clock.phase is Phase.STOPPED:
            self.times.append(clock.elapsed.total_seconds() / 60)

    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    def p90(self) -> float | None:
        if len(self.times) < 2:
            return self.times[0] if self.times else None
        return statistics.quantiles(self.times, n=10, method="inclusive")[-1]


@dataclass
class Row:
    scope: str
    priority: str
    issues: int = 0
    reopened: int = 0
    ratings: list[int] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=lambda: defaultdict(Target))

    def average_rating(self) -> str:
        return f"{statistics.mean(self.ratings):.1f}" if self.ratings else "-"


def summarize(items: Iterable[IssueClocks]) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for item in items:
        if not item.clocks:
            continue
        level = item.clocks[0].level
        row = rows.setdefault((item.scope, level), Row(item.scope, level))
        row.issues += 1
        # A reopen, on either tracker, is a new cycle of the resolution clock.
        row.reopened += max((c.cycle for c in item.clocks if c.kind == "resolution"), default=1) - 1
        row.ratings += [entry.score for entry in item.timeline if isinstance(entry, Rated)]
        for clock in item.clocks:
            row.targets[clock.target_id].add(clock)
    return [rows[key] for key in sorted(rows)]


def _minutes(value: float | None) -> str:
    if value is None:
        return "-"
    hours, minutes = divmod(round(value), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


COLUMNS = ["met", "breached", "running", "median", "p90"]


def _cells(row: Row, target_ids: Sequence[str]) -> list[str]:
    cells = [
        row.scope,
        row.priority,
        str(row.issues),
        str(row.reopened),
        str(len(row.ratings)),
        row.average_rating(),
    ]
    for target_id in target_ids:
        t = row.targets[target_id]
        cells += [str(t.met), str(t.breached), str(t.running), _minutes(t.median()), _minutes(t.p90())]
    return cells


def _header(target_ids: Sequence[str]) -> list[str]:
    head = ["scope", "priority", "issues", "reopened", "ratings", "average rating"]
    return head + [f"{t} {c}" for t in target_ids for c in COLUMNS]


def as_markdown(rows: Sequence[Row], target_ids: Sequence[str], since: dt.date) -> str:
    header = _header(target_ids)
    lines = [
        f"# Service targets since {since.isoformat()}",
        "",
        "Times are working time on each target's calendar, for the clocks that stopped.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_cells(row, target_ids)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def as_csv(rows: Sequence[Row], target_ids: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_header(target_ids))
    writer.writerows(_cells(row, target_ids) for row in rows)
    return out.getvalue()


def _chart(rows: Sequence[Row], target_id: str) -> str:
    """Horizontal bars per scope and priority: met (green) and breached (red) of one target."""
    width, bar, gap, label = 560, 18, 8, 170
    most = max((r.targets[target_id].met + r.targets[target_id].breached for r in rows), default=0) or 1
    parts = []
    for index, row in enumerate(rows):
        y = index * (bar + gap)
        t = row.targets[target_id]
        met_w = (width - label) * t.met / most
        breached_w = (width - label) * t.breached / most
        name = html.escape(f"{row.scope} {row.priority}")
        parts.append(
            f'<text x="0" y="{y + 13}" font-size="12">{name}</text>'
            f'<rect x="{label}" y="{y}" width="{met_w:.1f}" height="{bar}" fill="#2e7d32"><title>met {t.met}</title></rect>'
            f'<rect x="{label + met_w:.1f}" y="{y}" width="{breached_w:.1f}" height="{bar}" fill="#c62828">'
            f"<title>breached {t.breached}</title></rect>"
        )
    height = max(len(rows) * (bar + gap), bar)
    return f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(target_id)}">{"".join(parts)}</svg>'


def as_html(rows: Sequence[Row], target_ids: Sequence[str], since: dt.date) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in _header(target_ids))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(row, target_ids)) + "</tr>"
        for row in rows
    )
    charts = "".join(
        f"<h2>{html.escape(t)}: met <span style='color:#2e7d32'>■</span> "
        f"and breached <span style='color:#c62828'>■</span></h2>{_chart(rows, t)}"
        for t in target_ids
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Service targets</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
        f"<h1>Service targets since {since.isoformat()}</h1>{charts}"
        f"<h2>Figures</h2><table><tr>{header}</tr>{body}</table>"
        "<p>Times are working time on each target's calendar, for the clocks that stopped.</p></body></html>\n"
    )
