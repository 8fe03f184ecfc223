"""The design's sourced parts: captions become alt text (and a picture the source does not
describe is decoration, not a link), and the reporter's card (role, bio, photo) comes from
the saved texts and pages into the issue's "from the reporter" block."""

from __future__ import annotations

import re

from sqlmodel import Session, select

from newsletter.editorial.render import render_file
from newsletter.models import Article, AuthorProfileRow
from tests.conftest import Project


def test_the_reporters_card_and_the_captions_come_from_the_sources(collected: Project) -> None:
    with Session(collected.engine()) as session:
        card = session.get(AuthorProfileRow, "asami terajima")
        assert card is not None and card.role == "Reporter"
        assert card.bio.startswith("Asami Terajima is a reporter at the Kyiv Independent")
        assert (
            card.photo == "https://kyivindependent.com/content/images/size/w300/asami-terajima.jpg"
        )
        diary = session.exec(select(Article).where(Article.title.startswith("Front-line"))).one()  # type: ignore[attr-defined]
        assert diary.image_caption.startswith("A Ukrainian soldier walks past")
        # A feed's Media RSS caption (inside media:content, which feedparser drops).
        night = session.exec(
            select(Article).where(Article.image.endswith("bakhmut-front-sunday-night.jpg"))
        ).one()  # type: ignore[union-attr]
        assert night.image_caption == (
            "Ukrainian artillerymen fire towards Russian positions near Bakhmut on Dec. 18, 2022."
        )
    made = collected.run("issue", "new", "--week", "2022-W51", "--author", "Asami Terajima")
    assert made.exit_code == 0, made.output
    with Session(collected.engine()) as session:
        _, rendered = render_file(collected.config, session, "2022-W51")
    html, text = rendered.html.source, rendered.text.source
    assert re.search(r"<h2\b[^>]*>From the reporter</h2>", html)
    assert "asami-terajima.jpg" in html and "Reporter" in html
    assert "== FROM THE REPORTER ==" in text and "Asami Terajima, Reporter" in text
    images = re.findall(r"<a\b[^>]*>\s*<img\b[^>]*>|<img\b[^>]*>", html)
    for image in images:
        alt = re.search(r'alt="([^"]*)"', image)
        assert alt is not None
        # A picture the source describes says so and links to the story; one it does not
        # describe is not a link (a link without a name is a trap for screen readers).
        assert bool(alt.group(1)) == image.startswith("<a"), image[:200]
    assert 'alt="A Ukrainian soldier walks past a destroyed apartment block' in html


def test_a_card_in_a_page_fills_and_updates_the_reporters_profile(project: Project) -> None:
    page = project.root / "p.html"
    page.write_text(
        '<html><head><script type="application/ld+json">{"@context": "https://schema.org",'
        ' "@type": "NewsArticle", "headline": "A story", "datePublished": "2022-12-20T10:00:00Z",'
        ' "author": {"@type": "Person", "name": "Illia  Ponomarenko",'
        ' "jobTitle": "Defense reporter", "description": "Illia covers the war.",'
        ' "image": {"@type": "ImageObject",'
        ' "url": "/img/illia.jpg"}}, "image": {"@type": "ImageObject", "url": "/img/a.jpg",'
        ' "caption": "Tanks near Izium."}, "mainEntityOfPage": "https://example.org/story/"}'
        "</script></head><body><article><p>Body text of the story.</p></article></body></html>"
    )
    done = project.run("collect", "--page", str(page))
    assert done.exit_code == 0, done.output
    with Session(project.engine()) as session:
        card = session.get(AuthorProfileRow, "illia ponomarenko")
        assert card is not None and card.role == "Defense reporter"
        assert card.photo == "https://example.org/img/illia.jpg"
        story = session.exec(select(Article)).one()
        assert story.image_caption == "Tanks near Izium."
