from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from newsletter.collect.feeds import parse_feed
from newsletter.collect.fetch import Document
from newsletter.errors import SourceError

KYIV = ZoneInfo("Europe/Kyiv")


def doc(content: str | bytes, location: str = "feed.xml") -> Document:
    data = content.encode() if isinstance(content, str) else content
    return Document(location=location, content=data)


RSS2 = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>KI</title><link>https://kyivindependent.com/</link>
<item>
  <title>Two reporters, one story</title>
  <link>https://kyivindependent.com/two/?utm_source=rss</link>
  <guid isPermaLink="false">63a0c1</guid>
  <dc:creator><![CDATA[Asami Terajima]]></dc:creator>
  <dc:creator><![CDATA[Martin Fornusek]]></dc:creator>
  <pubDate>Sun, 18 Dec 2022 23:30:00 GMT</pubDate>
  <category>War</category><category>Kyiv</category>
  <description><![CDATA[<p>Short summary.</p>]]></description>
  <content:encoded><![CDATA[<p>Body <b>text</b>.</p><script>x()</script>
    <img src="/img/a.jpg" onerror="x()">]]></content:encoded>
</item>
<item>
  <title>A and B byline</title>
  <link>https://kyivindependent.com/ab/</link>
  <dc:creator>Asami Terajima and Illia Ponomarenko</dc:creator>
  <pubDate>Mon, 19 Dec 2022 10:00:00 +0200</pubDate>
  <description>Plain description</description>
</item>
<item><title>No date</title><link>https://kyivindependent.com/nodate/</link></item>
</channel></rss>"""


def test_rss2_repeated_creators_guid_tags_and_sanitised_content() -> None:
    articles, warnings = parse_feed(doc(RSS2, "https://kyivindependent.com/rss/"))
    first, second = articles
    assert first.url == "https://kyivindependent.com/two/"
    assert first.authors == ["Asami Terajima", "Martin Fornusek"]
    assert first.guid == "63a0c1"
    assert first.published == datetime(2022, 12, 18, 23, 30, tzinfo=UTC)
    assert first.tags == ["War", "Kyiv"]
    assert "<script" not in first.body_html and "onerror" not in first.body_html
    assert first.summary_html == "<p>Short summary.</p>"
    assert first.image == "https://kyivindependent.com/img/a.jpg"
    assert second.authors == ["Asami Terajima", "Illia Ponomarenko"]
    assert second.published == datetime(2022, 12, 19, 8, 0, tzinfo=UTC)
    assert len(warnings) == 1 and "'No date' has no publication date" in warnings[0]


def test_atom_author_lists_and_content() -> None:
    atom = """<?xml version="1.0" encoding="utf-8"?>
    <feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
    <updated>2022-12-20T09:00:00+02:00</updated>
    <entry><title>Atom story</title><id>urn:e1</id>
      <link rel="alternate" href="https://example.org/atom-story"/>
      <author><name>Asami Terajima</name></author><author><name>Alexander Query</name></author>
      <published>2022-12-20T09:00:00+02:00</published><updated>2022-12-21T09:00:00+02:00</updated>
      <content type="html">&lt;p&gt;Hello&lt;/p&gt;</content>
    </entry></feed>"""
    (article,), _ = parse_feed(doc(atom))
    assert article.authors == ["Asami Terajima", "Alexander Query"]
    assert article.guid == "urn:e1"
    assert article.published == datetime(2022, 12, 20, 7, 0, tzinfo=UTC)
    assert article.body_html == "<p>Hello</p>"
    assert article.summary_html == "<p>Hello</p>"  # derived from the body


def test_rss1_rdf_and_rss091() -> None:
    rdf = """<?xml version="1.0"?>
    <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
      xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
      <channel rdf:about="https://e.org/"><title>t</title><link>https://e.org/</link>
        <description>d</description></channel>
      <item rdf:about="https://e.org/one"><title>One</title><link>https://e.org/one</link>
        <dc:creator>Asami Terajima</dc:creator><dc:date>2022-12-20T10:00:00+02:00</dc:date>
      </item></rdf:RDF>"""
    (one,), _ = parse_feed(doc(rdf))
    assert (one.title, one.authors) == ("One", ["Asami Terajima"])
    rss091 = """<?xml version="1.0"?><rss version="0.91"><channel><title>t</title>
      <link>https://e.org/</link><description>d</description><language>en</language>
      <item><title>Old</title><link>https://e.org/old</link><description>x</description>
      <pubDate>Tue, 20 Dec 2022 10:00:00 GMT</pubDate></item></channel></rss>"""
    (old,), _ = parse_feed(doc(rss091))
    assert old.url == "https://e.org/old" and old.authors == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<rss version='2.0'><channel><item><title>x</broken></channel>", "malformed XML at line"),
        (
            "<?xml version='1.0'?><rss version='2.0'><channel><title>x</title></channel></rss>",
            "the feed has no entries",
        ),
        ("<html><body><p>Not a feed</p></body></html>", "not an RSS or Atom feed"),
        (
            b"<?xml version='1.0'?><rss version='2.0'><channel>"
            b"<title>caf\xe9</title></channel></rss>",
            "not valid utf-8",
        ),
        ("", "not an RSS or Atom feed"),
    ],
)
def test_bad_feeds_are_one_line_errors_naming_the_input(content: str | bytes, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_feed(doc(content, "bad-feed.xml"))
    text = str(caught.value)
    assert text.startswith("bad-feed.xml: ") and message in text and "\n" not in text


def test_declared_latin1_feed_is_read() -> None:
    feed = (
        b"<?xml version='1.0' encoding='iso-8859-1'?><rss version='2.0'><channel><title>t</title>"
        b"<item><title>Caf\xe9</title><link>https://e.org/c</link>"
        b"<pubDate>Tue, 20 Dec 2022 10:00:00 GMT</pubDate></item></channel></rss>"
    )
    (article,), _ = parse_feed(doc(feed))
    assert article.title == "Café"
