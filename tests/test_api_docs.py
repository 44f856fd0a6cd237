"""The API docs page works offline: Swagger UI is served by the application, not from a CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def _page_urls(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    # Scripts of the page build more URLs in JavaScript strings ("https://cdn..." or "//cdn...").
    inline = re.findall(r"""["'`]((?:https?:)?//[^"'`\s]+)["'`]""", html)
    return parser.urls + inline


def test_the_docs_page_loads_nothing_from_another_host(client):
    response = client.get("/api/docs")

    html = response.content.decode()
    urls = _page_urls(html)
    assert response.status_code == 200
    assert any("swagger-ui-bundle" in url for url in urls)  # the page does load Swagger UI ...
    external = [url for url in urls if urlsplit(url).netloc and urlsplit(url).netloc != "testserver"]
    assert external == []  # ... and from this application only


def test_every_asset_of_the_docs_page_is_a_static_file_of_the_application(client):
    html = client.get("/api/docs").content.decode()

    prefix = "/" + settings.STATIC_URL.strip("/") + "/"
    assets = [urlsplit(url).path for url in _page_urls(html) if urlsplit(url).path.startswith(prefix)]
    assert len(assets) >= 3  # the bundle, the preset, the stylesheet
    for path in assets:
        assert finders.find(path.removeprefix(prefix)) is not None, path
