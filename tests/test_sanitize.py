from urllib.parse import urlsplit

import lxml.html
from hypothesis import given
from hypothesis import strategies as st

from newsletter.reading import reading_minutes, summarize
from newsletter.sanitize import clean_html, html_to_text

HOSTILE = """
<p onclick="steal()" style="color:red">Hello <b>world</b></p>
<script>alert(1)</script><style>p { display:none }</style>
<a href="javascript:alert(1)">js</a> <a href="/relative">rel</a>
<img src="data:image/png;base64,AAAA" onerror="x()"><img src="pic.jpg" alt="A picture">
<iframe src="https://evil.example"></iframe><form><input name=x></form>
"""


def test_scripts_styles_events_and_javascript_urls_are_removed() -> None:
    cleaned = clean_html(HOSTILE, "https://news.example.org/story/")
    for bad in (
        "<script",
        "alert(1)",
        "<style",
        "onclick",
        "onerror",
        "javascript:",
        "style=",
        "<iframe",
        "<form",
        "<input",
        "data:image",
    ):
        assert bad not in cleaned, bad
    assert "<b>world</b>" in cleaned
    assert 'href="https://news.example.org/relative"' in cleaned
    assert 'src="https://news.example.org/story/pic.jpg"' in cleaned


fragments = st.lists(
    st.sampled_from(
        [
            "<script>",
            "</script>",
            "<p ",
            "onload=",
            "x()",
            ">",
            "javascript:",
            '<a href="',
            '">',
            "</a>",
            "<style>",
            "text",
            "&",
            "<",
            '"',
            "<img src=",
            "'",
        ]
    ),
    max_size=30,
).map("".join)


@given(fragments)
def test_nothing_executable_survives_any_input(fragment: str) -> None:
    cleaned = clean_html(fragment, "https://e.org/")
    if not cleaned:
        return
    root = lxml.html.fragment_fromstring(cleaned, create_parent="div")
    for element in root.iter():
        assert element.tag not in ("script", "style", "iframe", "object", "embed")
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), cleaned
            if name in ("href", "src"):
                assert urlsplit(value).scheme in ("http", "https", "mailto"), cleaned


def test_text_and_reading_time() -> None:
    html = "<h2>Title</h2><p>One two three.</p><ul><li>four</li></ul>"
    assert html_to_text(html) == "Title\n\nOne two three.\n\nfour"
    assert reading_minutes("word " * 10) == 1
    assert reading_minutes("word " * 239) == 2
    assert reading_minutes("") == 1


def test_summary_is_the_first_paragraph_cut_to_size() -> None:
    text = " ".join(f"w{i}" for i in range(100)) + "\n\nsecond"
    summary = summarize(text, words=5)
    assert summary == "w0 w1 w2 w3 w4…"
    assert summarize("short one\n\nsecond") == "short one"


def test_the_first_image_is_taken_at_the_largest_size_its_srcset_offers() -> None:
    from newsletter.sanitize import first_image

    html = '<p><img src="/a-300.jpg" srcset="/a-300.jpg 300w, /a-1200.jpg 1200w, /a-600.jpg 600w">'
    assert first_image(html, "https://e.org/x/") == "https://e.org/a-1200.jpg"
    retina = '<img src="a.jpg" srcset="a.jpg 1x, a@2x.jpg 2x">'
    assert first_image(retina, "https://e.org/x/") == "https://e.org/x/a@2x.jpg"
    assert (
        first_image('<img src="a.jpg" srcset="nonsense">', "https://e.org/")
        == "https://e.org/a.jpg"
    )
    assert first_image("<p>no picture</p>", "https://e.org/") is None
