"""`report --html`: one self-contained page, readable on a phone.

The charts are drawn by matplotlib (a maintained charting library; no chart is drawn by
hand here) as inline SVG with text as paths: no script, no font and nothing else is fetched
from anywhere, so the page opens offline, in a mail attachment or behind a strict CSP.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence

from newsletter.reporting.figures import IssueFigures

_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#1a1a1a;background:#fff}
main{max-width:860px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:.5rem 0}h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%;font-size:.95rem}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #ddd;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:8px}
.tile{border:1px solid #ddd;border-radius:6px;padding:8px}
.tile b{display:block;font-size:1.3rem}
figure{margin:0}svg{width:100%;height:auto}
.note{color:#444;font-size:.9rem}
a{color:#0b57d0;word-break:break-word}
@media (prefers-color-scheme:dark){body{background:#121212;color:#eee}
th,td{border-color:#333}.tile{border-color:#333}.note{color:#bbb}a{color:#8ab4f8}
figure{background:#fff;border-radius:6px}}
"""


def _svg(figure: object) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _plain(text: str, limit: int = 60) -> str:
    """A label for matplotlib: shortened, and `$` kept from starting mathtext."""
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return short.replace("$", r"\$")


def _charts(figures: IssueFigures, trend: Sequence[IssueFigures]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "newsletter"  # the same page for the same data
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    charts: list[tuple[str, str]] = []
    if figures.articles:
        items = list(reversed(figures.articles))
        figure = Figure(figsize=(7, 0.45 * len(items) + 1))
        axes = figure.add_subplot()
        axes.barh([_plain(a.title) for a in items], [a.clicks for a in items], color="#0b57d0")
        axes.set_xlabel("clicks")
        # Counts start at 0 and tick in whole numbers (with no clicks, matplotlib centred
        # the axis on 0 and drew -0.045 to 0.045).
        axes.set_xlim(0, max([a.clicks for a in items] + [1]))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.spines[["top", "right"]].set_visible(False)
        charts.append(("Clicks per article", _svg(figure)))
    if figures.clicks_by_hour:
        figure = Figure(figsize=(7, 2.8))
        axes = figure.add_subplot()
        labels = [hour[5:13].replace("T", " ") + "h" for hour, _ in figures.clicks_by_hour]
        axes.bar(labels, [n for _, n in figures.clicks_by_hour], color="#0b57d0")
        axes.set_ylabel("clicks")
        axes.set_ylim(0, max([n for _, n in figures.clicks_by_hour] + [1]))
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.tick_params(axis="x", labelrotation=60, labelsize=8)
        axes.spines[["top", "right"]].set_visible(False)
        charts.append(("Clicks per hour since the send (UTC)", _svg(figure)))
    if len(trend) > 1:
        figure = Figure(figsize=(7, 3))
        axes = figure.add_subplot()
        slugs = [issue.slug for issue in trend]

        def rate(part: int, issue: IssueFigures) -> float:
            return 100 * part / issue.delivered if issue.delivered else 0.0

        axes.plot(slugs, [100 * i.click_rate for i in trend], marker="o", label="clicks")
        axes.plot(slugs, [rate(i.bounced, i) for i in trend], marker="s", label="bounced")
        axes.plot(slugs, [rate(i.unsubscribed, i) for i in trend], marker="^", label="unsubscribed")
        axes.set_ylabel("% of delivered")
        axes.set_ylim(bottom=0)
        axes.tick_params(axis="x", labelrotation=30, labelsize=8)
        axes.legend(frameon=False)
        axes.spines[["top", "right"]].set_visible(False)
        charts.append(("The last issues", _svg(figure)))
    return charts


def report_page(name: str, figures: IssueFigures, trend: Sequence[IssueFigures]) -> str:
    e = html.escape
    tiles = [
        ("recipients", figures.recipients),
        ("delivered", figures.delivered),
        ("deferred", figures.deferred),
        ("failed", figures.failed),
        ("in doubt", figures.in_doubt),
        ("bounced (hard / soft)", f"{figures.bounced_hard} / {figures.bounced_soft}"),
        ("complained", figures.complained),
        ("unsubscribed after", figures.unsubscribed),
        ("clicks", figures.clicks),
        ("click rate", f"{100 * figures.click_rate:.1f} %"),
    ]
    rows = "".join(
        f'<tr><td><a href="{e(a.url)}">{e(a.title)}</a></td><td class="n">{a.clicks}</td>'
        + (f'<td class="n">{a.readers}</td>' if a.readers is not None else "")
        + f'<td class="n">{100 * a.share:.0f} %</td><td class="n">{100 * a.rate:.1f} %</td></tr>'
        for a in figures.articles
    )
    readers_head = '<th class="n">readers</th>' if any(
        a.readers is not None for a in figures.articles) else ""  # fmt: skip
    charts = "".join(
        f'<h2>{e(title)}</h2><figure role="img" aria-label="{e(title)}">{svg}</figure>'
        for title, svg in _charts(figures, trend)
    )
    opens = ""
    if figures.opens is not None:
        opens = (
            f"<h2>Opens</h2><p>{figures.opens['other']} opens, and "
            f"{figures.opens['machine']} by machines.</p>"
            f'<p class="note">{e(figures.opens["note"])}</p>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(name)}: {e(figures.slug)} report</title><style>{_STYLE}</style></head>
<body><main>
<h1>{e(name)}: {e(figures.slug)}</h1>
<p>{e(figures.subject)}{f" — sent {e(figures.sent_at[:16].replace('T', ' '))} UTC" if figures.sent_at else ""}</p>
<div class="grid">{"".join(f'<div class="tile">{e(label)}<b>{value}</b></div>' for label, value in tiles)}</div>
<h2>Articles</h2>
<table><thead><tr><th>article</th><th class="n">clicks</th>{readers_head}<th class="n">share</th><th class="n">rate</th></tr></thead>
<tbody>{rows or '<tr><td colspan="4">No counted links.</td></tr>'}</tbody></table>
{charts}{opens}
<p class="note">Counts only: nothing here says who clicked. Clicks exclude HEAD requests,
prefetches and known link scanners; rates are against delivered messages.</p>
</main></body></html>
"""  # noqa: E501
