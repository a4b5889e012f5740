"""``/docs`` with the network cut off: in headless Chromium, every request to a host
other than the API's own is aborted and recorded; none may be made, and the operations must be
rendered (issue 18, item 5). The pages' assets come from the fastapi-offline package."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.browser import needs_chromium
from tests.ingest_api.api_process import ApiProcess, api_process

pytestmark = needs_chromium


class _Links(HTMLParser):
    """Every address an HTML page names in src or href (its scripts, styles and icon)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[ApiProcess]:
    with api_process(tmp_path_factory.mktemp("docs"), redis_server) as served:
        yield served


@pytest.fixture
def offline(browser, api: ApiProcess):  # type: ignore[no-untyped-def]
    """A page whose requests to any host but the API's are aborted, and listed in ``page.elsewhere``."""
    context = browser.new_context()
    own = urlsplit(api.url).netloc
    elsewhere: list[str] = []

    def route(route) -> None:  # type: ignore[no-untyped-def]
        url = route.request.url
        if urlsplit(url).netloc == own:
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", route)
    page = context.new_page()
    page.elsewhere = elsewhere
    yield page
    context.close()


def _operations(api: ApiProcess) -> list[tuple[str, str, str]]:
    paths = httpx.get(f"{api.url}/openapi.json").json()["paths"]
    return [(method.upper(), path, op["summary"]) for path, ops in paths.items() for method, op in ops.items()]


def test_every_asset_the_docs_page_names_is_the_apis_own_and_answers(api: ApiProcess) -> None:
    page_path = "/docs"
    html = httpx.get(f"{api.url}{page_path}")
    assert html.status_code == 200
    links = _Links()
    links.feed(html.text)
    assert any(re.search(r"favicon", link) for link in links.found), links.found  # the icon too
    for link in links.found:
        url = urljoin(f"{api.url}{page_path}", link)
        assert urlsplit(url).netloc == urlsplit(api.url).netloc, url
        assert httpx.get(url).status_code == 200, url


def test_docs_renders_every_operation_with_no_other_host(offline, api: ApiProcess) -> None:  # type: ignore[no-untyped-def]
    offline.goto(f"{api.url}/docs")
    operations = _operations(api)
    offline.wait_for_selector(".opblock", timeout=30_000)
    # An operation with two tags is shown under each: count the operations, not the blocks.
    shown = offline.eval_on_selector_all(
        ".opblock-summary",
        "blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent,"
        " b.querySelector('.opblock-summary-path').dataset.path])",
    )
    assert {tuple(block) for block in shown} == {(method, path) for method, path, _ in operations}
    submit = offline.locator('.opblock-post .opblock-summary-path[data-path="/v1/transcribe"]')
    assert submit.count() == 1
    summary = next(summary for method, path, summary in operations if (method, path) == ("POST", "/v1/transcribe"))
    assert summary in offline.locator(".opblock-post").first.text_content()
    offline.wait_for_load_state("networkidle")
    assert offline.elsewhere == []


def test_there_is_no_redoc(api: ApiProcess) -> None:
    """ReDoc's sidebar loads its logo from its CDN, with no setting to stop it: the API has no /redoc."""
    assert httpx.get(f"{api.url}/redoc").status_code == 404


def test_a_page_that_loads_from_another_host_is_caught(offline) -> None:  # type: ignore[no-untyped-def]
    """The guard itself: a page that loads from another host is caught, so an empty list means something."""
    offline.route(
        "http://127.0.0.1/page",
        lambda route: route.fulfill(body="<img src='https://cdn.example.com/x.png'>", content_type="text/html"),
    )
    offline.goto("http://127.0.0.1/page")
    offline.wait_for_load_state("networkidle")
    assert offline.elsewhere == ["https://cdn.example.com/x.png"]
