"""The broker's words on the page: backticked commands become <code>, everything else is escaped,
and no backtick is left over (the wrong-key message once showed them raw)."""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st

from broker.web.text import plain, prose


def test_commands_in_backticks_become_code() -> None:
    assert str(prose("List them with `pair spaces list`.")) == "List them with <code>pair spaces list</code>."
    assert str(prose("a `<b>` b")) == "a <code>&lt;b&gt;</code> b"
    assert str(prose("one ` alone")) == "one  alone"
    assert plain("Run `pair web`.") == "Run pair web."


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
    | st.lists(st.sampled_from(["`", "<", "&", "x", " ", "\n", '"'])).map("".join)
)
def test_prose_is_safe_html_with_only_code_tags(text: str) -> None:
    out = str(prose(text))
    assert "`" not in out
    tags = re.findall(r"<[^>]*>", out)
    assert all(tag in ("<code>", "</code>") for tag in tags), tags
    # What a reader sees is the text, less its backticks.
    assert html.unescape(re.sub(r"</?code>", "", out)) == text.replace("`", "")
