"""The run report: one Markdown and one HTML page summarising a `desilab run`."""

from __future__ import annotations

import html as _html
import json
from pathlib import Path

from desilab import __version__
from desilab.run.stage import RunContext

__all__ = ["write_report"]


def _rel(path: str | Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def _markdown(ctx: RunContext) -> str:
    lines = [
        "# desilab run report",
        "",
        f"desilab {__version__} · scale `{ctx.scale}` · store `{ctx.settings.store_backend}` · "
        f"seed {ctx.settings.seed} · workers {ctx.settings.workers}",
        "",
        "| stage | status | seconds | checks passed |",
        "|---|---|---:|---:|",
    ]
    records = [r for r in ctx.records if r.name != "report"]
    for r in records:
        npass = sum(c.passed for c in r.checks)
        lines.append(f"| `{r.name}` | {r.status} | {r.seconds:.1f} | {npass}/{len(r.checks)} |")
    for r in records:
        lines += ["", f"## `{r.name}` — {r.description}", ""]
        if r.error:
            lines.append(f"**Error:** {r.error}")
        for c in r.checks:
            lines.append(f"- {'✅' if c.passed else '❌'} {c.name}{': ' + c.detail if c.detail else ''}")
        if r.outputs:
            lines += ["", "| product | path | size |", "|---|---|---:|"]
            for key, info in r.outputs.items():
                lines.append(f"| {key} | `{_rel(info['path'], ctx.out_dir)}` | {info.get('bytes', 0):,} B |")
        if r.summary:
            lines += ["", "```json", json.dumps(r.summary, indent=2, default=str), "```"]
        for fig in r.figures:
            lines += ["", f"![{Path(fig).stem}]({_rel(fig, ctx.out_dir)})"]
    return "\n".join(lines) + "\n"


def _html_page(ctx: RunContext, markdown: str) -> str:
    body = []
    records = [r for r in ctx.records if r.name != "report"]
    body.append("<table><tr><th>stage</th><th>status</th><th>seconds</th><th>checks</th></tr>")
    for r in records:
        npass = sum(c.passed for c in r.checks)
        cls = "ok" if r.status == "ok" else "bad"
        body.append(
            f"<tr><td><code>{_html.escape(r.name)}</code></td><td class='{cls}'>{r.status}</td>"
            f"<td>{r.seconds:.1f}</td><td>{npass}/{len(r.checks)}</td></tr>"
        )
    body.append("</table>")
    for r in records:
        body.append(f"<h2><code>{_html.escape(r.name)}</code> — {_html.escape(r.description)}</h2><ul>")
        for c in r.checks:
            mark = "✅" if c.passed else "❌"
            body.append(f"<li>{mark} {_html.escape(c.name)} <small>{_html.escape(c.detail)}</small></li>")
        body.append("</ul>")
        for key, info in r.outputs.items():
            href = _html.escape(_rel(info["path"], ctx.out_dir))
            body.append(f"<div>{_html.escape(key)}: <a href='{href}'>{href}</a> ({info.get('bytes', 0):,} B)</div>")
        for fig in r.figures:
            src = _html.escape(_rel(fig, ctx.out_dir))
            body.append(f"<figure><img src='{src}' style='max-width:100%'><figcaption>{src}</figcaption></figure>")
        if r.summary:
            body.append(f"<pre>{_html.escape(json.dumps(r.summary, indent=2, default=str))}</pre>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "td,th{padding:.2em .8em;border-bottom:1px solid #ddd}.ok{color:#080}.bad{color:#b00}"
        "pre{background:#f6f6f6;padding:.5em;overflow:auto}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>desilab run report</title>"
        f"<style>{style}</style></head><body><h1>desilab run report</h1>"
        f"<p>desilab {__version__} · scale <code>{ctx.scale}</code> · store "
        f"<code>{ctx.settings.store_backend}</code> · seed {ctx.settings.seed}</p>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def write_report(ctx: RunContext) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into the run folder; return both paths."""
    md = _markdown(ctx)
    md_path = ctx.path("report.md")
    md_path.write_text(md)
    html_path = ctx.path("report.html")
    html_path.write_text(_html_page(ctx, md))
    return md_path, html_path
