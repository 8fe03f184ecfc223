from hypothesis import given
from hypothesis import strategies as st

from newsletter.urls import canonical_url, url_key


def test_tracking_parameters_host_case_port_and_fragment_go() -> None:
    assert (
        canonical_url(
            "HTTPS://KyivIndependent.COM:443/War-Notes/?utm_source=rss&ref=x&fbclid=1#top"
        )
        == "https://kyivindependent.com/War-Notes/"
    )


def test_meaningful_parameters_stay_sorted() -> None:
    assert canonical_url("http://e.com/a?page=2&id=7&utm_medium=x") == "http://e.com/a?id=7&page=2"


def test_relative_links_resolve_against_the_base() -> None:
    assert canonical_url("../b/", "https://e.com/a/x/") == "https://e.com/a/b/"


def test_non_default_port_is_kept() -> None:
    assert canonical_url("http://127.0.0.1:8080/a") == "http://127.0.0.1:8080/a"


urls = st.builds(
    lambda host, path, params: f"https://{host}/{path}?{params}",
    st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,10}\.(com|org|UA)", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9/_-]{0,20}", fullmatch=True),
    st.lists(
        st.sampled_from(["utm_source=a", "ref=b", "id=3", "p=2", "fbclid=z", "q=x%20y"]),
        max_size=5,
    ).map("&".join),
)


@given(urls)
def test_canonical_is_idempotent_and_tracking_free(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once
    assert "utm_" not in once and "fbclid" not in once and "ref=" not in once
    assert once.split("/")[2] == once.split("/")[2].lower()


def test_url_key_joins_the_forms_one_article_takes() -> None:
    forms = [
        "https://kyivindependent.com/story/",
        "http://www.kyivindependent.com/story?utm_source=x",
        "https://KyivIndependent.com/story#comments",
    ]
    assert {url_key(form) for form in forms} == {"kyivindependent.com/story"}
    assert url_key("https://e.org/a?id=1") != url_key("https://e.org/a?id=2")
