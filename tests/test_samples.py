"""The bundled samples, as the README demo collects them: the acceptance check of the
collection issue, on both databases."""

import json

from tests.conftest import SAMPLE_SOURCES, Project

WEEK_51 = [
    "https://kyivindependent.com/bakhmut-front-sunday-night/",  # Sun 23:30 UTC = Mon in Kyiv
    "https://kyivindependent.com/energy-grid-repairs/",  # feed and page
    "https://kyivindependent.com/kharkiv-school-shelter/",  # Atom, co-author
    "https://kyivindependent.com/front-line-diary-bakhmut/",  # page only
    "https://kyivindependent.com/patriot-what-it-changes/",  # "A and B" byline
    "https://kyivindependent.com/war-notes-week-51/",  # RSS and Atom, different URLs
    "https://kyivindependent.com/putin-claims-readiness-for-negotiations/",  # saved text
]


def test_samples_list_exactly_one_reporters_week_each_once(project: Project) -> None:
    project.add_sources(SAMPLE_SOURCES)
    result = project.run("collect", "--json")
    assert result.exit_code == 0, result.output
    listed = project.run(
        "articles", "list", "--author", "Asami Terajima", "--week", "2022-W51", "--json"
    )
    rows = json.loads(listed.stdout)
    assert [row["url"] for row in rows] == WEEK_51
    assert all("Asami Terajima" in row["authors"] for row in rows)
    assert all(row["published"].endswith("+02:00") for row in rows)
    hostile = next(r for r in rows if "kharkiv" in r["url"])
    shown = json.loads(project.run("articles", "show", hostile["url"], "--json").stdout)
    assert "javascript:" not in shown["body_html"] and "onclick" not in shown["body_html"]

    again = json.loads(project.run("collect", "--json").stdout)
    assert all(s["new"] == 0 and s["updated"] == 0 for s in again["sources"])
