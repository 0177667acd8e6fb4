"""Words on the page: the broker's messages made readable in HTML.

Messages and hints are written once, for the CLI too, where a command in backticks
(`pair spaces list`) reads as a command. On the page the backticks become <code> and every
other character is escaped; static/app.js does the same for the messages it receives as JSON.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

CODE = re.compile(r"`([^`\n]+)`")  # app.js's CODE is the same pattern


def prose(text: str) -> Markup:
    """`text` as safe HTML: each `span` between backticks becomes <code>span</code>, everything
    else is escaped, and a backtick without its pair is dropped."""
    parts: list[Markup] = []
    pos = 0
    for match in CODE.finditer(text):
        parts.append(escape(text[pos : match.start()].replace("`", "")))
        parts.append(Markup("<code>{}</code>").format(match.group(1)))
        pos = match.end()
    parts.append(escape(text[pos:].replace("`", "")))
    return Markup("").join(parts)


def plain(text: str) -> str:
    """`text` without its backticks, for places that take no markup (a page's <title>)."""
    return text.replace("`", "")
