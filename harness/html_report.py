"""report.html: the run's report.md as one self-contained HTML page.

The page renders the markdown lines harness.report writes (headings, lists, tables, paragraphs,
`code`, **bold**, _italic_) and turns every `![caption](plots/x.png)` into a captioned figure
whose PNG is embedded as a base64 data URI, so the file can be mailed or attached to a CI job on
its own. A "Provenance" section lists the manifest's code, software and machine facts. No
scripts, no external resources.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from harness.store import write_atomic

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{border-bottom:2px solid #ddd;padding-bottom:.2em}
h2{margin-top:1.8em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#444;margin-top:.3em}
code{background:#f5f5f5;padding:0 .25em;border-radius:3px}
.wide{overflow-x:auto}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.85em}
"""

_IMAGE = re.compile(r"^!\[(?P<alt>.*)\]\((?P<src>[^)\s]+)\)$")
_INLINE = re.compile(r"`(?P<code>[^`]+)`|\*\*(?P<bold>[^*]+)\*\*|(?<!\w)_(?P<em>[^_]+)_(?!\w)")
PROVENANCE_KEYS = ("experiment", "run_id", "status", "config", "overrides", "calibration",
                   "start_time", "end_time", "git", "python", "packages", "platform",
                   "cpu_model", "cores", "usable_cores", "hostname", "fingerprint",
                   "points_done", "total_point_wall_s", "sessions")


def inline(text: str) -> str:
    """Escape text and render `code`, **bold** and _italic_ spans."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        if m["code"] is not None:
            out.append(f"<code>{html.escape(m['code'])}</code>")
        elif m["bold"] is not None:
            out.append(f"<strong>{html.escape(m['bold'])}</strong>")
        else:
            out.append(f"<em>{html.escape(m['em'])}</em>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out)


def _cells(row: str) -> list[str]:
    inner = row.strip()[1:-1] if row.strip().endswith("|") else row.strip()[1:]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def data_uri(path: Path) -> str:
    """A PNG (or other image) file as a base64 data URI."""
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(
        path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _figure(base: Path, alt: str, src: str) -> str:
    file = base / src
    caption = f"<figcaption>{inline(alt)}</figcaption>"
    if not file.is_file():
        return f"<figure><p><em>(figure {html.escape(src)} missing)</em></p>{caption}</figure>"
    return (f"<figure><img src=\"{data_uri(file)}\" alt=\"{html.escape(alt)}\">"
            f"{caption}</figure>")


def markdown_to_html(lines: list[str], base: Path) -> str:
    """Render the markdown subset report.md uses; images relative to `base` are embedded."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    rows: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if rows:
            head, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]
            out.append("<div class='wide'><table><thead><tr>"
                       + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>"
                                 for r in body) + "</tbody></table></div>")
            rows.clear()

    for raw in lines:
        line = raw.rstrip()
        image = _IMAGE.match(line.strip())
        if image:
            flush()
            if out and out[-1] == f"<p>{inline(image['alt'])}</p>":
                out.pop()  # the caption paragraph report.md puts above each image
            out.append(_figure(base, image["alt"], image["src"]))
        elif line.startswith("#"):
            flush()
            level = min(6, len(line) - len(line.lstrip("#")))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.startswith("- "):
            if para or rows:
                flush()
            items.append(line[2:])
        elif line.startswith("|"):
            if para or items:
                flush()
            rows.append(line)
        elif not line.strip():
            flush()
        else:
            if items or rows:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(out)


def provenance_html(manifest: dict) -> str:
    """The manifest's provenance facts as a definition table."""
    rows = []
    for key in PROVENANCE_KEYS:
        if key not in manifest:
            continue
        value = manifest[key]
        if isinstance(value, dict | list):
            shown = f"<pre>{html.escape(json.dumps(value, indent=1, default=str))}</pre>"
        else:
            shown = html.escape(str(value))
        rows.append(f"<tr><th>{html.escape(key)}</th><td style='text-align:left'>{shown}</td></tr>")
    return "<h2>Provenance</h2><table>" + "".join(rows) + "</table>"


def write_html(run: Path, title: str, lines: list[str]) -> Path:
    """Write `run/report.html` from report.md's lines and the run's manifest."""
    run = Path(run)
    manifest_file = run / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    body = markdown_to_html("\n".join(lines).split("\n"), run)
    page = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            f"{body}\n{provenance_html(manifest)}\n</body></html>\n")
    out = run / "report.html"
    write_atomic(out, page)
    return out
