"""The interactive multi-select that ``pair spaces authorize`` shows to choose teammates.

The prompt looks like this (the product's published text)::

    Select users to share your Space with.
    ↑/↓ to move, space to select, enter to confirm, q to cancel.
    2 items
    > [ ] alice@pairspaces.com
      [ ] bob@pairspaces.com
    ↑/k up • ↓/j down • / filter • q quit • ? more

The module is split in two halves so the behaviour can be tested without a terminal:

* :class:`PickerState` holds everything the prompt shows (cursor, selections, filter, help toggle)
  and :func:`render` turns it into prompt_toolkit's ``(style, text)`` fragments, a pure function.
* :func:`pick_users` wires both into a small prompt_toolkit application and
  runs it on the real terminal.

prompt_toolkit is only imported inside :func:`pick_users`: the CLI imports this module lazily, and
even then the import stays cheap until a prompt is really shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from prompt_toolkit.application import Application
    from prompt_toolkit.formatted_text import StyleAndTextTuples

__all__ = ["HEADER", "INSTRUCTIONS", "PickerState", "pick_users", "plain_text", "render"]

Fragments = list[tuple[str, str]]

HEADER = "Select users to share your Space with."
INSTRUCTIONS = "↑/↓ to move, space to select, enter to confirm, q to cancel."
SHORT_HELP = "↑/k up • ↓/j down • / filter • q quit • ? more"
FULL_HELP = (
    "↑/k up • ↓/j down • g/home top • G/end bottom",
    "space/x select • a select all • n select none",
    "/ filter • enter confirm • q/esc quit • ? close help",
)
FILTER_HELP = "type to filter • ↑/↓ move • space select • enter apply filter • esc clear filter"

# Style classes used by render(); the colours live in _STYLE, next to the application.
S_HEADER = "class:picker.header"
S_INSTRUCTIONS = "class:picker.instructions"
S_FILTER_LABEL = "class:picker.filter-label"
S_FILTER = "class:picker.filter"
S_COUNT = "class:picker.count"
S_POINTER = "class:picker.pointer"
S_CURRENT = "class:picker.current"
S_SELECTED = "class:picker.selected"
S_ITEM = "class:picker.item"
S_MORE = "class:picker.more"
S_EMPTY = "class:picker.empty"
S_HELP = "class:picker.help"

# How many lines of the screen the scrolling arrows ("↑ 3 more", "↓ 5 more") take.
_ARROW_LINES = 2


def _items_label(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _window_top(top: int, cursor: int, count: int, page: int) -> int:
    """The first visible row of a `page`-row window that keeps `cursor` in view, scrolling minimally."""
    if count <= page:
        return 0
    top = min(max(top, cursor - page + 1), cursor)
    return max(0, min(top, count - page))


class PickerState:
    """Everything the picker shows, and the operations its keys perform.

    `cursor` is a position in :meth:`visible` (not in `emails`); selections are kept per item of
    `emails`, so they survive filtering and duplicates are told apart.
    """

    def __init__(self, emails: Sequence[str]) -> None:
        self.emails: tuple[str, ...] = tuple(emails)
        self.cursor = 0
        self.top = 0  # first list row shown when the list is taller than the terminal
        self.filter_text = ""
        self.filtering = False  # True while the "/" filter line is being edited
        self.show_help = False  # the "? more" long help
        self._selected: set[int] = set()
        self._visible: list[int] = list(range(len(self.emails)))

    # -- queries ---------------------------------------------------------------------------------

    def visible_indices(self) -> list[int]:
        """Indices into `emails` of the items the filter lets through, in original order."""
        return list(self._visible)

    def visible(self) -> list[str]:
        """The emails currently shown."""
        return [self.emails[i] for i in self._visible]

    def selected(self) -> list[str]:
        """The selected emails, in their original order (hidden-by-filter ones included)."""
        return [email for i, email in enumerate(self.emails) if i in self._selected]

    def is_selected(self, index: int) -> bool:
        return index in self._selected

    def current_index(self) -> int | None:
        """Index into `emails` of the item under the cursor, or None when nothing is shown."""
        return self._visible[self.cursor] if self._visible else None

    def current(self) -> str | None:
        index = self.current_index()
        return None if index is None else self.emails[index]

    # -- movement and selection ------------------------------------------------------------------

    def move(self, delta: int) -> None:
        """Move the cursor by `delta` rows, clamped to the first and last visible rows."""
        if self._visible:
            self.cursor = max(0, min(self.cursor + delta, len(self._visible) - 1))

    def home(self) -> None:
        self.cursor = 0

    def end(self) -> None:
        self.cursor = max(0, len(self._visible) - 1)

    def toggle(self) -> None:
        """Select or unselect the item under the cursor."""
        index = self.current_index()
        if index is not None:
            self._selected ^= {index}

    def select_all(self) -> None:
        """Select every visible item."""
        self._selected.update(self._visible)

    def select_none(self) -> None:
        """Unselect every visible item."""
        self._selected.difference_update(self._visible)

    def fit(self, page: int) -> None:
        """Scroll so the cursor is inside a window of `page` list rows."""
        self.top = _window_top(self.top, self.cursor, len(self._visible), max(1, page))

    # -- filtering -------------------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        """Show only the emails containing `text` (case-insensitive); the cursor stays on its item
        when that item is still shown, otherwise it goes to the first row."""
        current = self.current_index()
        self.filter_text = text
        needle = text.casefold()
        self._visible = [i for i, email in enumerate(self.emails) if needle in email.casefold()]
        self.cursor = self._visible.index(current) if current in self._visible else 0
        self.top = 0

    def start_filter(self) -> None:
        self.filtering = True
        self.show_help = False

    def type_filter(self, text: str) -> None:
        self.set_filter(self.filter_text + text)

    def backspace_filter(self) -> None:
        self.set_filter(self.filter_text[:-1])

    def accept_filter(self) -> None:
        """Leave filter mode, keeping the filter applied."""
        self.filtering = False

    def cancel_filter(self) -> None:
        """Clear the filter and leave filter mode."""
        self.filtering = False
        self.set_filter("")


def _help_lines(state: PickerState) -> tuple[str, ...]:
    if state.filtering:
        return (FILTER_HELP,)
    return FULL_HELP if state.show_help else (SHORT_HELP,)


def _list_window(state: PickerState, max_height: int | None) -> tuple[int, int, bool]:
    """``(top, page, scrolled)``: which list rows fit in `max_height` terminal rows."""
    rows = len(state.visible_indices())
    if max_height is None:
        return 0, rows, False
    chrome = 3 + (1 if state.filtering or state.filter_text else 0) + len(_help_lines(state))
    room = max_height - chrome
    if rows <= room:
        return 0, rows, False
    page = max(1, room - _ARROW_LINES)
    return _window_top(state.top, state.cursor, rows, page), page, True


def render(state: PickerState, max_height: int | None = None) -> Fragments:
    """The picker's screen as prompt_toolkit ``(style, text)`` fragments; a pure function of `state`.

    `max_height` is the number of terminal rows available: when the list does not fit, only a
    window around the cursor is shown, between "↑ N more" / "↓ N more" lines.
    """
    out: Fragments = []

    def line(*fragments: tuple[str, str]) -> None:
        out.extend(fragments)
        out.append(("", "\n"))

    line((S_HEADER, HEADER))
    line((S_INSTRUCTIONS, INSTRUCTIONS))
    if state.filtering or state.filter_text:
        label = (S_FILTER_LABEL, "Filter: ")
        if state.filtering:
            # "[SetCursorPosition]" puts the terminal's cursor after the text being typed.
            line(label, (S_FILTER, state.filter_text), ("[SetCursorPosition]", ""))
        else:
            line(label, (S_FILTER, state.filter_text))

    visible = state.visible_indices()
    line((S_COUNT, _items_label(len(visible))))

    if not visible:
        line((S_EMPTY, "  No matching users." if state.emails else "  No users."))
    top, page, scrolled = _list_window(state, max_height)
    if scrolled:
        line((S_MORE, f"  ↑ {top} more" if top else ""))
    for position in range(top, min(top + page, len(visible))):
        index = visible[position]
        selected = state.is_selected(index)
        text = ("[x] " if selected else "[ ] ") + state.emails[index]
        if position == state.cursor:
            line((S_POINTER, "> "), (S_CURRENT + (" " + S_SELECTED if selected else ""), text))
        else:
            line(("", "  "), (S_SELECTED if selected else S_ITEM, text))
    if scrolled:
        below = len(visible) - (top + page)
        line((S_MORE, f"  ↓ {below} more" if below > 0 else ""))

    help_lines = _help_lines(state)
    for i, text in enumerate(help_lines):
        out.append((S_HELP, text))
        if i < len(help_lines) - 1:
            out.append(("", "\n"))
    return out


def plain_text(fragments: Fragments) -> str:
    """The text of `fragments` without styles (what a terminal would show)."""
    return "".join(text for _style, text in fragments)


_STYLE = {
    "picker.header": "bold",
    "picker.instructions": "fg:ansibrightblack",
    "picker.filter-label": "fg:ansicyan",
    "picker.filter": "",
    "picker.count": "fg:ansibrightblack",
    "picker.pointer": "fg:ansimagenta bold",
    "picker.current": "fg:ansimagenta",
    "picker.selected": "fg:ansigreen",
    "picker.item": "",
    "picker.more": "fg:ansibrightblack",
    "picker.empty": "fg:ansibrightblack italic",
    "picker.help": "fg:ansibrightblack",
}


def _build_app(state: PickerState) -> Application[list[str] | None]:
    from prompt_toolkit.application import Application
    from prompt_toolkit.application.current import get_app
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.input import create_input
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.keys import Keys
    from prompt_toolkit.layout import HSplit, Layout, Window
    from prompt_toolkit.layout.controls import FormattedTextControl
    from prompt_toolkit.output import create_output
    from prompt_toolkit.styles import Style

    filtering = Condition(lambda: state.filtering)
    browsing = ~filtering
    kb = KeyBindings()

    def cancel(event: KeyPressEvent) -> None:
        event.app.exit(result=None)

    # Keys that work in both modes.
    @kb.add("up")
    @kb.add("c-p")
    def _up(event: KeyPressEvent) -> None:
        state.move(-1)

    @kb.add("down")
    @kb.add("c-n")
    def _down(event: KeyPressEvent) -> None:
        state.move(1)

    @kb.add("pageup")
    def _page_up(event: KeyPressEvent) -> None:
        state.move(-10)

    @kb.add("pagedown")
    def _page_down(event: KeyPressEvent) -> None:
        state.move(10)

    @kb.add("home")
    def _home(event: KeyPressEvent) -> None:
        state.home()

    @kb.add("end")
    def _end(event: KeyPressEvent) -> None:
        state.end()

    @kb.add("space")
    def _toggle(event: KeyPressEvent) -> None:
        state.toggle()

    kb.add("c-c")(cancel)

    # Browsing the list.
    kb.add("k", filter=browsing)(_up)
    kb.add("j", filter=browsing)(_down)
    kb.add("g", filter=browsing)(_home)
    kb.add("G", filter=browsing)(_end)
    kb.add("q", filter=browsing)(cancel)
    kb.add("escape", filter=browsing)(cancel)

    @kb.add("x", filter=browsing)
    def _toggle_x(event: KeyPressEvent) -> None:
        state.toggle()

    @kb.add("a", filter=browsing)
    def _all(event: KeyPressEvent) -> None:
        state.select_all()

    @kb.add("n", filter=browsing)
    def _none(event: KeyPressEvent) -> None:
        state.select_none()

    @kb.add("?", filter=browsing)
    def _help(event: KeyPressEvent) -> None:
        state.show_help = not state.show_help

    @kb.add("/", filter=browsing)
    def _filter(event: KeyPressEvent) -> None:
        state.start_filter()

    @kb.add("enter", filter=browsing)
    def _confirm(event: KeyPressEvent) -> None:
        event.app.exit(result=state.selected())

    # Editing the filter.
    @kb.add("enter", filter=filtering)
    def _accept(event: KeyPressEvent) -> None:
        state.accept_filter()

    @kb.add("escape", filter=filtering)
    def _clear(event: KeyPressEvent) -> None:
        state.cancel_filter()

    @kb.add("backspace", filter=filtering)
    @kb.add("c-h", filter=filtering)
    def _backspace(event: KeyPressEvent) -> None:
        state.backspace_filter()

    @kb.add("c-u", filter=filtering)
    def _erase(event: KeyPressEvent) -> None:
        state.set_filter("")

    @kb.add(Keys.Any, filter=filtering)
    def _type(event: KeyPressEvent) -> None:
        if event.data.isprintable():
            state.type_filter(event.data)

    @kb.add(Keys.BracketedPaste, filter=filtering)
    def _paste(event: KeyPressEvent) -> None:
        state.type_filter("".join(ch for ch in event.data if ch.isprintable()))

    def get_fragments() -> StyleAndTextTuples:
        height = get_app().output.get_size().rows
        # Remember the scroll position so the list scrolls minimally from one key to the next.
        _top, page, scrolled = _list_window(state, height)
        if scrolled:
            state.fit(page)
        return cast("StyleAndTextTuples", render(state, max_height=height))

    control = FormattedTextControl(get_fragments, focusable=True)
    window = Window(control, always_hide_cursor=browsing, dont_extend_height=True)
    return Application(
        layout=Layout(HSplit([window])),
        key_bindings=kb,
        style=Style.from_dict(_STYLE),
        full_screen=False,
        erase_when_done=True,
        mouse_support=False,
        # Render and read on the terminal even when stdout is redirected (e.g. `pair ... > file`).
        input=create_input(always_prefer_tty=True),
        output=create_output(always_prefer_tty=True),
    )


def pick_users(emails: Sequence[str]) -> list[str] | None:
    """Ask which of `emails` to share the Space with.

    Returns the selected emails in their original order (empty when the user confirmed without
    selecting anyone), or None when the user cancelled (q, Esc, Ctrl-C). With no emails at all
    no prompt is shown and the result is ``[]``.
    """
    if not emails:
        return []
    app = _build_app(PickerState(emails))
    app.ttimeoutlen = 0.1  # how long a lone Esc waits to be told apart from an escape sequence
    try:
        return app.run()
    except (KeyboardInterrupt, EOFError):
        return None
