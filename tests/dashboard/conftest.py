"""What the dashboard's route tests share: a test client of a repository's dashboard, and a
small HTML tree (stdlib parser) to read pages by their elements rather than by substrings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

from platformctl.dashboard.app import create_app

# elements that have no end tag in HTML
VOID = frozenset(
    "area base br col embed hr img input link meta source track wbr".split()  # noqa: SIM905
)


def client_of(root: Path) -> TestClient:
    """A test client of the dashboard of the repository at ``root`` (no server, no port)."""
    return TestClient(create_app(root))


@dataclass
class Element:
    """One element of a parsed page: its tag, attributes and children (elements, text)."""

    tag: str
    attrs: dict[str, str | None]
    children: list[Element | str] = field(default_factory=list)

    def iter(self) -> Iterator[Element]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        """The elements named ``tag`` (``*``: any) whose attributes include ``attrs``; a
        ``class_`` matches one class of the element's."""
        found = []
        for element in self.iter():
            if tag not in ("*", element.tag):
                continue
            if all(self._matches(element, name, value) for name, value in attrs.items()):
                found.append(element)
        return found

    def find(self, tag: str, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]

    @staticmethod
    def _matches(element: Element, name: str, value: str) -> bool:
        if name == "class_":
            return value in (element.attrs.get("class") or "").split()
        return element.attrs.get(name.replace("_", "-")) == value

    @property
    def text(self) -> str:
        """The text inside, whitespace collapsed (as a reader sees it, hidden text included)."""
        parts: list[str] = []
        for child in self.children:
            parts.append(child if isinstance(child, str) else f" {child.text} ")
        return " ".join("".join(parts).split())


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    """The page's element tree (the ``#document`` element)."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def table_rows(table: Element) -> list[list[str]]:
    """The text of each cell (``th`` and ``td``) of each row of ``table``."""
    return [
        [cell.text for cell in row.iter() if cell.tag in ("th", "td")]
        for row in table.find_all("tr")
    ]
