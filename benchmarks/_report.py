"""Turn the benchmarks' printed tables into the docs' generated page and chart.

``run.py`` collects what each benchmark printed; this module keeps it (a JSON file, so
the page can be rebuilt without a quarter of an hour of benchmarks) and renders it for
docs/benchmarks.md, which includes the result:

- ``benchmarks.md``: the command, the machine, and every table as ratios. Absolute
  times depend on the machine and on its neighbours (this one is shared: ±30 % between
  rounds is normal), ratios measured side by side in one run do much less; so a column
  of times or rates is dropped when the table has a ratio column, and turned into
  "× <first row>" when it has none. The benchmarks' own prose is kept.
- ``benchmarks.svg``: a bar chart of the "× baseline" ratios of the throughput tables
  (the page shows it itself, so that GitHub shows it too). Plain hand-written SVG: no
  matplotlib, nothing to install, a readable diff.

Regenerate from the last run: ``.venv/bin/python benchmarks/_report.py``.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import platform
import re
import sys
from pathlib import Path

GENERATED = Path(__file__).resolve().parent.parent / "docs" / "_generated"
RAW_NAME = "benchmarks-run.json"
PAGE_NAME = "benchmarks.md"
CHART_NAME = "benchmarks.svg"


@dataclasses.dataclass
class Section:
    """What one benchmark printed, and how it ran."""

    name: str
    args: list[str]
    returncode: int
    seconds: float
    output: str


@dataclasses.dataclass
class Run:
    """One ``run.py`` run: where, when, how, and every benchmark's output."""

    machine: dict[str, str]
    started: str
    quick: list[str]  # the benchmarks that ran their quick profile
    command: str
    sections: list[Section]


def machine() -> dict[str, str]:
    """The machine the figures come from, as far as the standard library can tell."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
    }


# -- keeping the run ---------------------------------------------------------------------


def save(run: Run, folder: Path) -> Path:
    """Write the raw run as JSON; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RAW_NAME
    path.write_text(json.dumps(dataclasses.asdict(run), indent=1, ensure_ascii=False) + "\n")
    return path


def load(folder: Path) -> Run:
    """Read the raw run ``save`` wrote."""
    data = json.loads((folder / RAW_NAME).read_text())
    data["sections"] = [Section(**s) for s in data["sections"]]
    return Run(**data)


def write(run: Run, folder: Path) -> list[Path]:
    """Save the raw run, then render the page and the chart; return the files written.

    The raw file is written first: if rendering fails, nothing measured is lost.
    """
    paths = [save(run, folder)]
    page, chart = folder / PAGE_NAME, folder / CHART_NAME
    page.write_text(render_page(run))
    chart.write_text(render_chart(run))
    return [*paths, page, chart]


# -- reading the printed tables ----------------------------------------------------------


@dataclasses.dataclass
class Table:
    """A Markdown table as a benchmark printed it."""

    header: list[str]
    rows: list[list[str]]

    @classmethod
    def parse(cls, lines: list[str]) -> Table:
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
        return cls(cells[0], cells[2:])  # cells[1] is the |---| line


Block = str | Table


def blocks(output: str) -> list[Block]:
    """The output as text paragraphs and tables, in order."""
    found: list[Block] = []
    table: list[str] = []
    text: list[str] = []

    def end_text() -> None:
        if any(t.strip() for t in text):
            found.append("\n".join(text).strip())
        text.clear()

    for line in output.splitlines():
        if line.startswith("|"):
            end_text()
            table.append(line)
            continue
        if table:
            found.append(Table.parse(table))
            table = []
        if line.strip():
            text.append(line)
        else:
            end_text()
    if table:
        found.append(Table.parse(table))
    end_text()
    return found


RATIO = re.compile(r"×|÷|^vs ")
ABSOLUTE = re.compile(r"µs|\bms\b|msg/s|p50|p99|wall time|min–max|\bs\b|seconds", re.I)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def is_ratio(header: str) -> bool:
    return bool(RATIO.search(header))


def is_absolute(header: str) -> bool:
    return not is_ratio(header) and bool(ABSOLUTE.search(header))


def number(cell: str) -> float | None:
    """The one number in a cell ("1,123", "0.87 s"), or None (none, or a range)."""
    found = NUMBER.findall(cell)
    if len(found) != 1:
        return None
    return float(found[0].replace(",", ""))


def as_ratios(table: Table) -> Table:
    """The table with ratios instead of absolute times and rates (see the docstring)."""
    columns = range(len(table.header))
    if any(is_ratio(h) for h in table.header[1:]):
        keep = [i for i in columns if i == 0 or not is_absolute(table.header[i])]
        return Table([table.header[i] for i in keep], [[r[i] for i in keep] for r in table.rows])
    if not table.rows:
        return table
    base = table.rows[0]
    header, rows = [table.header[0]], [[r[0]] for r in table.rows]
    for i in columns[1:]:
        title = table.header[i]
        if "min–max" in title:
            continue  # a range is no ratio; the median's column says it
        if not is_absolute(title):
            header.append(title)
            for row, out in zip(table.rows, rows):
                out.append(row[i])
            continue
        header.append(f"{title}, × {base[0]}")
        ref = number(base[i])
        for row, out in zip(table.rows, rows):
            value = number(row[i])
            out.append("–" if value is None or not ref else f"{value / ref:,.2f}×")
    return Table(header, rows)


def markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    align = ["---"] + ["---:" if _numeric(table, i) else "---" for i in range(1, len(table.header))]
    return "\n".join([line(table.header), "|" + "|".join(align) + "|", *map(line, table.rows)])


def _numeric(table: Table, column: int) -> bool:
    return all(re.match(r"^[-–≤\d.,/ ×]+", r[column]) for r in table.rows if r[column])


# -- the page ----------------------------------------------------------------------------


def title_of(section: Section) -> str:
    """The benchmark's docstring's first line, read from its file."""
    path = Path(__file__).resolve().parent / section.name
    try:
        text = path.read_text()
    except OSError:
        return section.name
    match = re.search(r'"""(.+?)(?:\n|""")', text)
    if not match:
        return section.name
    return match.group(1).strip().rstrip(".").replace("``", "`")  # reST literals as Markdown


def render_page(run: Run) -> str:
    """The generated Markdown page docs/benchmarks.md includes."""
    m = run.machine
    minutes = sum(s.seconds for s in run.sections) / 60
    lines = [
        "<!-- Generated by benchmarks/run.py (make bench) through benchmarks/_report.py: do not",
        "     edit; run `make bench` (or `python benchmarks/_report.py` to re-render). -->",
        "",
        "| the run | |",
        "|---|---|",
        f"| command | `{run.command}` |",
        f"| quick profile | {_quick(run)} |",
        f"| when | {run.started} |",
        f"| machine | {m['cpu']}, {m['cores']} cores, {m['os']} (shared with other work) |",
        f"| Python | {m['python']} |",
        f"| duration | {minutes:.0f} minutes for {len(run.sections)} benchmarks |",
        "",
    ]
    for section in run.sections:
        lines += [f"### {section.name}: {title_of(section)}", ""]
        options = " ".join(section.args)
        lines += [
            f"`.venv/bin/python benchmarks/{section.name}{' ' + options if options else ''}`"
            f", {section.seconds / 60:.1f} minutes.",
            "",
        ]
        if section.returncode != 0:
            lines += [f"**It failed** (exit status {section.returncode}); what it printed:", ""]
        for block in blocks(section.output):
            if isinstance(block, Table):
                lines += [markdown(as_ratios(block)), ""]
            else:
                lines += [_demoted(block), ""]
    return "\n".join(lines).rstrip() + "\n"


def _quick(run: Run) -> str:
    if not run.quick:
        return "none: every benchmark ran its full profile"
    if len(run.quick) == len(run.sections):
        return "every benchmark: fewer, smaller rounds, noisier figures"
    names = ", ".join(run.quick)
    return f"{names} (fewer, smaller rounds); the others ran their full profile"


def _demoted(text: str) -> str:
    """A benchmark's own headings go below the page's ``###``."""
    return re.sub(r"^#{1,3} ", "#### ", text, flags=re.M)


# -- the chart ---------------------------------------------------------------------------


@dataclasses.dataclass
class Group:
    """One bar group of the chart: a table's ratios to its baseline."""

    title: str
    baseline: str
    bars: list[tuple[str, float]]


def speedup(cell: str) -> float | None:
    """A ratio cell as "× baseline", higher is better: "1.96×", "5.6× faster",
    "1.83× the time" (slower: 1/1.83)."""
    value = number(cell.split("×", maxsplit=1)[0]) if "×" in cell else None
    if value is None or value <= 0:
        return None
    return 1 / value if "the time" in cell else value


def groups(run: Run) -> list[Group]:
    """The throughput tables: a rate column and a ratio column (or bench_build's
    "vs" column, a speed-up)."""
    found = []
    for section in run.sections:
        for block in blocks(section.output):
            if not isinstance(block, Table):
                continue
            header = block.header
            ratio = next((i for i, h in enumerate(header) if i and is_ratio(h)), None)
            rate = any("msg/s" in h for h in header) or header[ratio or 0].startswith("vs ")
            if ratio is None or not rate:
                continue
            bars = [(r[0], s) for r in block.rows if (s := speedup(r[ratio])) is not None]
            if bars:
                baseline = header[ratio].removeprefix("× ").removeprefix("vs ")
                found.append(Group(f"{section.name}: {title_of(section)}", baseline, bars))
    return found


def render_chart(run: Run) -> str:
    """An SVG bar chart of every throughput table's ratios, one panel per table."""
    width, label_w, bar_w, row_h = 820, 330, 400, 22
    panels = groups(run)
    y = 30
    parts: list[str] = []
    for group in panels:
        top = max(1.0, *(v for _, v in group.bars)) * 1.1
        parts.append(_text(12, y, f"{group.title} (× {group.baseline})", bold=True))
        y += 10
        one = label_w + bar_w / top  # where 1× is
        first = y
        for label, value in group.bars:
            length = max(1.0, bar_w * value / top)
            colour = "#3b7dd8" if value >= 1 else "#d8833b"
            parts.append(_text(label_w - 8, y + 15, label, anchor="end"))
            parts.append(
                f'<rect x="{label_w}" y="{y + 4}" width="{length:.1f}" height="{row_h - 8}" '
                f'fill="{colour}"><title>{html.escape(label)}: {value:.2f}×</title></rect>'
            )
            parts.append(_text(label_w + length + 6, y + 15, f"{value:.2f}×"))
            y += row_h
        parts.append(
            f'<line x1="{one:.1f}" y1="{first}" x2="{one:.1f}" y2="{y}" stroke="#555" '
            'stroke-dasharray="3,3"/>'
        )
        y += 28
    if not panels:
        parts.append(_text(12, y, "No throughput table in this run."))
        y += 28
    note = "Higher is faster; the dashed line is 1× (the baseline). Generated by make bench."
    parts.append(_text(12, y, note))
    height = y + 16
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
            '<rect width="100%" height="100%" fill="#ffffff"/>',
            *parts,
            "</svg>",
            "",
        ]
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y}" text-anchor="{anchor}"{weight} fill="#222">'
        f"{html.escape(text)}</text>"
    )


if __name__ == "__main__":
    print(", ".join(str(p) for p in write(load(GENERATED), GENERATED)))
