"""A browse page as a reader gets it: links, objects' keys, headings and code, parsed with the
standard library's HTMLParser (what the unit and e2e tests read pages with)."""

from __future__ import annotations

from html.parser import HTMLParser


class Page(HTMLParser):
    """What a reader of the page gets: links, the objects' keys, texts, the head's links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[dict[str, str]] = []
        self.head_links: list[dict[str, str]] = []
        self.keys: list[str] = []
        self.headings: list[str] = []
        self.codes: list[str] = []
        self._tag: str | None = None
        self.meta: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "a":
            self.links.append(values)
        elif tag == "link":
            self.head_links.append(values)
        elif tag == "meta":
            self.meta.append(values)
        elif tag == "li" and "data-key" in values:
            self.keys.append(values["data-key"])
        self._tag = tag

    def handle_data(self, data: str) -> None:
        if self._tag in ("h1", "h2", "h3"):
            self.headings.append(data)
        elif self._tag == "code":
            self.codes.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._tag = None
