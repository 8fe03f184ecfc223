"""`issue check --links` against a real HTTP server on 127.0.0.1 (which answers HEAD with
501, as some do, so every check also takes the GET path)."""

import json

from newsletter.editorial.link_check import check_links
from tests.conftest import Project
from tests.smtpserver import free_port
from tests.webserver import Route, Server

OWN = "https://news.example.org"


def page(*links: str, images: tuple[str, ...] = ()) -> str:
    anchors = "".join(f'<a href="{link}">x</a>' for link in links)
    pictures = "".join(f'<img src="{image}" alt="x">' for image in images)
    return f"<html><body>{anchors}{pictures}</body></html>"


def test_broken_redirected_and_oversized_are_reported_and_good_ones_are_not(
    web: Server,
) -> None:
    web.routes["/ok"] = Route(b"<p>fine</p>")
    web.routes["/moved"] = Route(redirect=web.base.replace("127.0.0.1", "localhost") + "/ok")
    web.routes["/same-site"] = Route(redirect=web.url("/ok"))
    web.routes["/small.png"] = Route(b"\x89PNG" + b"0" * 1000, content_type="image/png")
    web.routes["/big.jpg"] = Route(b"0" * 1_500_000, content_type="image/jpeg")
    web.routes["/not-image.png"] = Route(b"<html></html>", content_type="text/html")
    web.routes["/error"] = Route(b"", status=500)
    dead = f"http://127.0.0.1:{free_port()}/gone"
    html = page(
        web.url("/ok"),
        web.url("/ok"),  # twice in the message, fetched once
        web.url("/missing"),
        web.url("/moved"),
        web.url("/same-site"),
        web.url("/error"),
        dead,
        f"{OWN}/unsubscribe/sample-token",
        "mailto:editor@example.org",
        images=(web.url("/small.png"), web.url("/big.jpg"), web.url("/not-image.png")),
    )
    findings = check_links(html, OWN)
    assert sorted((f.code, f.level) for f in findings) == [
        ("image-size", "warning"),
        ("image-type", "error"),
        ("link-broken", "error"),
        ("link-broken", "error"),
        ("link-redirect", "warning"),
        ("link-unreachable", "error"),
    ]
    messages = " | ".join(f.message for f in findings)
    assert f"broken link {web.url('/missing')}: 404" in messages
    assert f"broken link {web.url('/error')}: 500" in messages
    assert f"{web.url('/moved')} redirects to another site: http://localhost" in messages
    assert f"link {dead}: no connection" in messages
    assert "big.jpg is 1.5 MB" in messages and "not-image.png is text/html" in messages
    assert not web.hits("/unsubscribe/sample-token")
    # HEAD (answered 501 here) then GET, once per distinct URL.
    assert len(web.hits("/ok")) == 3  # /ok itself, and through both redirects
    assert len(web.hits("/error")) == 3  # a 5xx is tried three times


def test_offline_it_says_it_could_not_check() -> None:
    port = free_port()
    html = page(f"http://127.0.0.1:{port}/a", images=(f"http://127.0.0.1:{port}/b.png",))
    (finding,) = check_links(html, OWN)
    assert (finding.level, finding.code) == ("warning", "links-unchecked")
    assert "could not check 2 link(s) and image(s)" in finding.message


def test_issue_check_links_on_the_sample_issue_offline(collected: Project) -> None:
    """The sample's articles live on the web, which tests cannot reach: a warning, exit 0,
    and without --links nothing is fetched."""
    assert collected.run("issue", "new", "--week", "2022-W51").exit_code == 0
    result = collected.run("issue", "check", "2022-W51", "--links", "--json")
    assert result.exit_code == 0, result.output
    codes = {f["code"] for f in json.loads(result.stdout)["findings"]}
    assert "links-unchecked" in codes
    plain = collected.run("issue", "check", "2022-W51", "--json")
    assert "links-unchecked" not in {f["code"] for f in json.loads(plain.stdout)["findings"]}
