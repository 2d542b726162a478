"""Rendering a :class:`~cmkd.results.tables.Table`: terminal and Markdown (tabulate), LaTeX (booktabs, as
the paper sets its tables)."""

from __future__ import annotations

from .cells import AVG_TABLES, dataset_label, rich_modality
from .tables import UP, Cell, Table, row_group


def _fmt(c: Cell, style: str, std: bool, compare: bool, published: bool = False) -> str:
    if c.mean is None:
        return "-"
    text = f"{c.mean:.2f}"
    if std and c.n:
        pm = r"$\pm$" if style == "latex" else "±"
        text += f" {pm} {c.std:.2f} (n={c.n})"
    if compare:
        paper = "-" if c.paper is None else f"{c.paper:.2f}"
        delta = "" if c.paper is None else f" ({c.mean - c.paper:+.2f})"
        text = f"{text} / {paper}{delta}"
    if c.arrow:
        text += {"latex": r" $\uparrow$" if c.arrow == UP else r" $\downarrow$"}.get(style, f" {c.arrow}")
    if c.significant is False:
        text += r"$^{\mathrm{ns}}$" if style == "latex" else " ns"
    elif c.arrow and c.significant is None and not published:  # one seed, or none shared with STUDENT: no test
        text += r"$^{\mathrm{untested}}$" if style == "latex" else " untested"
    if c.best:
        text = {"markdown": f"**{text}**", "latex": rf"\textbf{{{text}}}"}.get(style, f"{text} *")
    return text


def header(table: Table, style: str) -> list[str]:
    labels = []
    for d, m in table.columns:
        name = dataset_label(d)
        if table.number == 1:
            rich = rich_modality(d) or "?"
            labels.append(f"{name} {rich.upper()}->{m.upper()}")
        else:
            labels.append(f"{name} {m.upper()}")
    labels = ["Method", ""] + labels + (["Avg"] if table.number in AVG_TABLES else [])
    if style == "latex":
        labels = [lab.replace("->", r"$\rightarrow$").replace("_", r"\_") for lab in labels]
    return labels


def body(table: Table, style: str, std: bool = False, compare: bool = False) -> list[list[str]]:
    out = []
    for key, label, sub in table.rows:
        row = [label, sub] + [_fmt(table.cells[(key, col)], style, std, compare, table.published) for col in table.columns]
        if table.number in AVG_TABLES:
            avg = table.shown_average(key)
            row.append("-" if avg is None else f"{avg:.2f}")
        if style == "latex":
            row[0] = row[0].replace("_", r"\_")
        out.append(row)
    return out


def render(table: Table, style: str = "terminal", std: bool = False, compare: bool = False) -> str:
    from tabulate import tabulate

    if style == "latex":
        return latex(table, std, compare)
    fmt = {"terminal": "simple", "markdown": "github"}[style]
    text = tabulate(body(table, style, std, compare), headers=header(table, style), tablefmt=fmt, disable_numparse=True)
    return f"{table.title()}\n\n{text}"


def _tex(text: str) -> str:
    return text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")


def latex(table: Table, std: bool = False, compare: bool = False) -> str:
    """A booktabs table as the paper sets them: a caption, the data sets as spanning headers over their
    modality columns (``\cmidrule`` under each), then the rows, grouped by ``\midrule``."""
    groups: list[tuple[str, int]] = []
    for d, _ in table.columns:
        if groups and groups[-1][0] == d:
            groups[-1] = (d, groups[-1][1] + 1)
        else:
            groups.append((d, 1))
    avg = table.number in AVG_TABLES
    top = [r"\multicolumn{2}{l}{Method}"] + [rf"\multicolumn{{{n}}}{{c}}{{{_tex(dataset_label(d))}}}" for d, n in groups]
    rules, start = [], 3
    for _, n in groups:
        rules.append(rf"\cmidrule(lr){{{start}-{start + n - 1}}}")
        start += n
    sub = []
    for d, m in table.columns:
        if table.number == 1:
            sub.append(f"{(rich_modality(d) or '?').upper()}" + r"$\rightarrow$" + m.upper())
        else:
            sub.append(m.upper())
    what = f"mean test {_tex(table.metric)} over seeds" + (r" $\pm$ std (n seeds)" if std else "") + (
        " / the paper's value (difference)" if compare else "")
    caption = (_tex(table.title().split(": ", 1)[1].split(",")[0]) + f": {what}; arrows against STUDENT of the "
               "same column, the best distilled value of each column in bold"
               + ("; ns: not significant against STUDENT (paired t-test, Holm within the column)" if table.number in (1, 2) else ""))
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}", rf"\label{{tab:cmkd-table{table.number}}}",
             r"\begin{tabular}{ll" + "r" * (len(table.columns) + avg) + "}", r"\toprule",
             " & ".join(top + ([""] if avg else [])) + r" \\",
             " ".join(rules),
             " & ".join(["", ""] + sub + (["Avg"] if avg else [])) + r" \\", r"\midrule"]
    previous = None
    for i, row in enumerate(body(table, "latex", std, compare)):
        group = row_group(table.rows[i][0])
        if previous is not None and group != previous:
            lines.append(r"\midrule")
        previous = group
        lines.append(" & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)
