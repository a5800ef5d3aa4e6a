"""Write a run's report: ``report.html`` (one file, figures embedded, opens offline) and
``report.md`` with its figures as PNG files beside it, from the same sections."""

from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path
from typing import Optional

from lmforge.reporting.facts import collect
from lmforge.reporting.sections import Section, build

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the texts use: **bold** and `code`."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def render_html(sections: list[Section], title: str, sources: dict, run_dir: Path) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["b64"] = lambda b: base64.b64encode(b).decode("ascii")
    env.filters["inline"] = lambda t: Markup(_inline(t))
    env.filters["href"] = lambda rel: (run_dir / rel).resolve().as_uri() if rel else ""
    return env.get_template("report.html.j2").render(sections=sections, title=title, sources=sources,
                                                     generated=time.strftime("%Y-%m-%d %H:%M:%S"))


def render_markdown(sections: list[Section], title: str, figures_dir: Path, rel_prefix: str) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for b in s.blocks:
            if b.form == "text":
                lines += [b.text, ""]
            elif b.form == "table":
                esc = lambda c: c.replace("|", "\\|").replace("\n", " ")  # noqa: E731
                lines += ["| " + " | ".join(esc(h) for h in b.headers) + " |", "|" + "---|" * len(b.headers)]
                lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in b.rows]
                lines += (["", f"<sub>from {b.source}</sub>"] if b.source else []) + [""]
            elif b.form == "code":
                lines += ["```yaml", b.text.rstrip(), "```", ""]
            elif b.form == "figure":
                name = f"{b.name}.png"
                (figures_dir / name).write_bytes(b.png)
                lines += [f"![{b.text}]({rel_prefix}{name})", "", f"<sub>{b.text} — from {b.source}</sub>", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path, out_dir: Optional[str | Path] = None) -> Path:
    """Collect the run's facts and write ``report.html`` + ``report.md`` (+ ``figures/``) into
    ``out_dir`` (default ``<run>/report``). Returns the HTML path."""
    run = Path(run_dir).resolve()
    facts = collect(run)
    sections = build(facts)
    out = Path(out_dir) if out_dir else run / "report"
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    name = (facts.pipeline or {}).get("name") or run.name
    title = f"{name}"
    (out / "report.md").write_text(render_markdown(sections, title, figures_dir, "figures/"))
    page = out / "report.html"
    tmp = page.with_name(page.name + ".tmp")
    tmp.write_text(render_html(sections, title, facts.sources, run))
    tmp.replace(page)
    return page
