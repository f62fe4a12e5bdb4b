"""The page around the sections: header, contents, screen and print CSS, inlined plotly.js."""

from __future__ import annotations

from serving.report.charts import plotly_js
from serving.report.format import esc

CSS = """
:root { --ink:#1f2933; --muted:#7b8794; --line:#e4e7eb; --bg:#f7f8fa; --card:#fff;
  --good:#16a34a; --warn:#d97706; --bad:#dc2626; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
  sans-serif; color:var(--ink); background:var(--bg); }
header.report-header { background:#111827; color:#fff; padding:20px 32px; }
header.report-header h1 { margin:0 0 4px; font-size:22px; }
header.report-header p { margin:0; color:#cbd2d9; }
nav.toc { padding:8px 32px; background:#fff; border-bottom:1px solid var(--line);
  position:sticky; top:0; z-index:10; }
nav.toc a { color:var(--accent); text-decoration:none; margin-right:16px; white-space:nowrap; }
main { max-width:1200px; margin:0 auto; padding:8px 32px 48px; }
.report-section { background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:16px 20px; margin:18px 0; }
.report-section h2 { margin:0 0 8px; font-size:18px; }
.report-section h3 { margin:18px 0 6px; font-size:15px; }
.lead { color:#52606d; margin:0 0 12px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(220px,1fr)); gap:12px;
  margin:8px 0 12px; }
.card { border:1px solid var(--line); border-left:4px solid var(--accent); border-radius:6px;
  padding:10px 12px; background:#fff; }
.card.good { border-left-color:var(--good); } .card.warn { border-left-color:var(--warn); }
.card.bad { border-left-color:var(--bad); } .card.muted { border-left-color:var(--muted); }
.card-label { color:#52606d; font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card-value { font-size:26px; font-weight:650; margin:2px 0 4px; }
.card-line { font-size:12.5px; color:#3e4c59; }
.pill { display:inline-block; padding:0 8px; border-radius:10px; font-size:12px;
  background:#e0e7ff; color:#1e3a8a; }
.pill.good { background:#dcfce7; color:#166534; } .pill.warn { background:#fef3c7;
  color:#92400e; } .pill.bad { background:#fee2e2; color:#991b1b; }
.muted-text { color:var(--muted); }
.empty-state { padding:18px; border:1px dashed #cbd2d9; border-radius:6px; color:#52606d;
  background:#fafbfc; margin:8px 0; }
table { border-collapse:collapse; width:100%; margin:6px 0 10px; font-size:13px; }
caption { caption-side:bottom; text-align:left; color:var(--muted); font-size:12px;
  padding-top:4px; }
th, td { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left;
  vertical-align:top; }
th { background:#f5f7fa; font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
ul.compact { margin:0; padding-left:16px; }
figure.chart { margin:8px 0 12px; }
figure.chart figcaption { color:var(--muted); font-size:12px; }
.columns { display:grid; grid-template-columns:repeat(auto-fit,minmax(320px,1fr)); gap:0 18px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:12px; }
@media print {
  @page { size: A4 landscape; margin: 12mm; }
  body { background:#fff; font-size:11px; }
  nav.toc { display:none; }
  header.report-header { background:#fff; color:#000; padding:0 0 8px;
    border-bottom:2px solid #000; }
  header.report-header p { color:#333; }
  main { max-width:none; padding:0; }
  .report-section { border:none; padding:0; margin:0 0 10mm; break-inside:auto; }
  .report-section h2 { break-after:avoid; }
  .card, figure.chart, tr { break-inside:avoid; }
  figure.chart { width:100%; }
  a { color:inherit; text-decoration:none; }
}
"""


def page(title: str, subtitle: str, toc: list[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{sid}">{esc(name)}</a>' for sid, name in toc)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js()}</script>'
        "</head><body>"
        f'<header class="report-header"><h1>{esc(title)}</h1><p>{subtitle}</p></header>'
        f'<nav class="toc">{links}</nav>'
        f"<main>{body}</main>"
        "<footer>salesml — self-hosted forecasts from your own CRM history. Figures are model "
        "estimates, not promises.</footer>"
        "</body></html>\n"
    )
