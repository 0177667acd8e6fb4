"""The teammate picker of `pair spaces authorize`: its state/render logic, and the real prompt
driven through a pseudo-terminal.

prompt_toolkit redraws by diffing screens: after a key press it writes only the cells that
changed, with cursor movements in between, so the raw output never contains e.g. "1 item" as one
string. The terminal tests therefore run it under `tests.support.terminal.Terminal`, which feeds
everything the child writes into a tiny VT100 screen and waits until the *screen* shows the text.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pair.cli import picker
from pair.cli.picker import PickerState, pick_users, plain_text, render
from tests.support.terminal import CTRL_C, DOWN, ESC, UP, Terminal, line, tty_env

pytestmark = pytest.mark.tty

REPO = Path(__file__).resolve().parents[2]
ALICE = "alice@pairspaces.com"
BOB = "bob@pairspaces.com"
EMAILS = [ALICE, BOB]

SEED_SCREEN = """\
Select users to share your Space with.
↑/↓ to move, space to select, enter to confirm, q to cancel.
2 items
> [ ] alice@pairspaces.com
  [ ] bob@pairspaces.com
↑/k up • ↓/j down • / filter • q quit • ? more"""

SHORT_HELP = "↑/k up • ↓/j down • / filter • q quit • ? more"


def text(state: PickerState, max_height: int | None = None) -> str:
    return plain_text(render(state, max_height))


def lines(state: PickerState, max_height: int | None = None) -> list[str]:
    return text(state, max_height).split("\n")


# --------------------------------------------------------------------------------------------------
# State and rendering, no terminal.


def test_initial_render_is_the_published_text():
    assert text(PickerState(EMAILS)) == SEED_SCREEN


def test_render_is_style_and_text_pairs():
    fragments = render(PickerState(EMAILS))
    assert all(isinstance(style, str) and isinstance(txt, str) for style, txt in fragments)


def test_move_is_clamped():
    state = PickerState(EMAILS)
    state.move(-1)
    assert state.current() == ALICE
    state.move(1)
    assert state.current() == BOB
    state.move(1)
    assert state.current() == BOB
    assert lines(state)[3:5] == ["  [ ] alice@pairspaces.com", "> [ ] bob@pairspaces.com"]
    state.home()
    assert state.current() == ALICE
    state.end()
    assert state.current() == BOB


def test_toggle_selects_and_unselects_the_row_under_the_cursor():
    state = PickerState(EMAILS)
    state.toggle()
    assert state.selected() == [ALICE]
    assert lines(state)[3] == "> [x] alice@pairspaces.com"
    state.toggle()
    assert state.selected() == []
    assert lines(state)[3] == "> [ ] alice@pairspaces.com"


def test_selected_keeps_the_original_order():
    state = PickerState(["c@x.com", "a@x.com", "b@x.com"])
    state.end()
    state.toggle()
    state.home()
    state.toggle()
    assert state.selected() == ["c@x.com", "b@x.com"]


def test_duplicates_are_selected_separately():
    state = PickerState([ALICE, ALICE])
    state.move(1)
    state.toggle()
    assert state.selected() == [ALICE]
    assert lines(state)[3:5] == ["  [ ] alice@pairspaces.com", "> [x] alice@pairspaces.com"]


def test_filter_is_case_insensitive_and_counts_one_item():
    state = PickerState(EMAILS)
    state.start_filter()
    state.type_filter("ALI")
    assert state.visible() == [ALICE]
    assert lines(state) == [
        "Select users to share your Space with.",
        "↑/↓ to move, space to select, enter to confirm, q to cancel.",
        "Filter: ALI",
        "1 item",
        "> [ ] alice@pairspaces.com",
        picker.FILTER_HELP,
    ]


def test_filter_keeps_selections_and_the_cursor_item():
    state = PickerState([ALICE, BOB, "carol@pairspaces.com"])
    state.end()
    state.toggle()  # carol
    state.home()
    state.move(1)  # bob
    state.set_filter("b")
    assert state.visible() == [BOB]
    assert state.current() == BOB
    state.toggle()
    assert state.selected() == [BOB, "carol@pairspaces.com"]  # carol is hidden but stays selected
    state.set_filter("")
    assert state.current() == BOB
    assert lines(state)[3:6] == [
        "  [ ] alice@pairspaces.com",
        "> [x] bob@pairspaces.com",
        "  [x] carol@pairspaces.com",
    ]


def test_filter_resets_the_cursor_when_its_item_is_hidden():
    state = PickerState(EMAILS)
    state.move(1)
    state.set_filter("ali")
    assert state.current() == ALICE
    assert state.cursor == 0


def test_filter_matching_nothing():
    state = PickerState(EMAILS)
    state.set_filter("zzz")
    assert state.visible() == []
    assert state.current() is None
    state.toggle()
    state.move(1)
    assert state.selected() == []
    out = lines(state)
    assert "0 items" in out
    assert "  No matching users." in out


def test_filter_editing_accept_and_cancel():
    state = PickerState(EMAILS)
    state.start_filter()
    assert lines(state)[2] == "Filter: "  # filter mode shows the line even while it is empty
    state.type_filter("bobx")
    assert state.visible() == []
    state.backspace_filter()
    assert state.filter_text == "bob"
    assert state.visible() == [BOB]
    state.accept_filter()
    assert not state.filtering
    out = lines(state)
    assert out[2:5] == ["Filter: bob", "1 item", "> [ ] bob@pairspaces.com"]
    assert out[-1] == SHORT_HELP
    state.start_filter()
    state.cancel_filter()
    assert not state.filtering
    assert state.filter_text == ""
    assert state.current() == BOB  # the cursor stays on its item
    state.home()
    assert text(state) == SEED_SCREEN


def test_counts_follow_the_visible_items():
    many = [f"user{i}@pairspaces.com" for i in range(12)]
    state = PickerState(many)
    assert lines(state)[2] == "12 items"
    state.set_filter("user1")
    assert lines(state)[2:4] == ["Filter: user1", "3 items"]  # user1, user10, user11
    state.set_filter("user11")
    assert lines(state)[2:4] == ["Filter: user11", "1 item"]


def test_select_all_and_none_apply_to_the_visible_items():
    state = PickerState([ALICE, BOB, "carol@pairspaces.com"])
    state.select_all()
    assert state.selected() == [ALICE, BOB, "carol@pairspaces.com"]
    state.set_filter("bob")
    state.select_none()
    assert state.selected() == [ALICE, "carol@pairspaces.com"]
    state.set_filter("")
    state.select_none()
    assert state.selected() == []


def test_question_mark_help_lists_the_extra_keys():
    state = PickerState(EMAILS)
    state.show_help = True
    out = text(state)
    assert SHORT_HELP not in out
    assert "a select all" in out
    assert "n select none" in out
    assert "? close help" in out
    state.show_help = False
    assert text(state) == SEED_SCREEN


def test_long_lists_scroll_around_the_cursor():
    many = [f"user{i:02d}@pairspaces.com" for i in range(30)]
    state = PickerState(many)
    out = lines(state, max_height=12)
    assert len(out) <= 12
    assert out[2] == "30 items"
    assert out[3] == ""  # nothing above yet
    assert out[4] == "> [ ] user00@pairspaces.com"
    assert re.fullmatch(r"  ↓ \d+ more", out[-2])
    for _ in range(29):
        state.move(1)
        state.fit(picker._list_window(state, 12)[1])
        out = lines(state, max_height=12)
        assert len(out) <= 12
        assert f"> [ ] {state.current()}" in out
    assert out[-2] == ""  # nothing below any more
    assert re.fullmatch(r"  ↑ \d+ more", out[3])
    # Without a height, everything is shown.
    assert len(lines(state)) == 3 + 30 + 1


def test_no_emails_returns_an_empty_list_without_a_prompt(monkeypatch):
    def no_app(state):
        raise AssertionError("the prompt must not start")

    monkeypatch.setattr(picker, "_build_app", no_app)
    assert pick_users([]) == []


def test_importing_the_module_does_not_import_prompt_toolkit():
    code = "import sys, pair.cli.picker; print('prompt_toolkit' in sys.modules, 'questionary' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --------------------------------------------------------------------------------------------------
# The real prompt in a pseudo-terminal.


class Tty(Terminal):
    """pick_users(...) running in a pseudo-terminal, seen through a `Screen`."""

    def __init__(self, emails: list[str], timeout: float = 15) -> None:
        code = (
            "import json, sys\n"
            "from pair.cli.picker import pick_users\n"
            f"result = pick_users({emails!r})\n"
            "print('RESULT=' + json.dumps(result))\n"
        )
        super().__init__(sys.executable, ["-c", code], cwd=REPO, env=tty_env(), timeout=timeout)

    def result(self) -> object:
        """Wait for the child to exit; what pick_users returned."""
        assert self.wait_exit() == 0, self.transcript
        m = re.search(r"RESULT=(.*?)\r?\n", self.transcript)
        assert m is not None, self.transcript
        return json.loads(m.group(1))


@pytest.fixture
def tty():
    started: list[Tty] = []

    def start(emails: list[str] = EMAILS) -> Tty:
        t = Tty(emails)
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()


def test_tty_shows_the_published_text_and_selects_with_j_space_enter(tty):
    t = tty()
    screen = t.expect_screen(SEED_SCREEN)
    assert screen.startswith(SEED_SCREEN)
    # The first paint writes each line whole, so the raw output holds the text as-is too.
    for text_line in SEED_SCREEN.split("\n")[:3]:
        assert text_line in t.transcript
    assert ALICE in t.transcript
    assert BOB in t.transcript

    t.send("j")
    t.expect_screen(line("  [ ] alice@pairspaces.com"), line("> [ ] bob@pairspaces.com"))
    t.send(" ")
    t.expect_screen(line("> [x] bob@pairspaces.com"))
    t.send("\r")
    assert t.result() == [BOB]
    # The prompt erased itself when done.
    assert "Select users" not in t.screen.display()


def test_tty_q_cancels(tty):
    t = tty()
    t.expect_screen(SEED_SCREEN)
    t.send("q")
    assert t.result() is None
    assert not t.child.isalive()


def test_tty_filter_then_select(tty):
    t = tty()
    t.expect_screen(SEED_SCREEN)
    t.send("/")
    t.expect_screen(line("Filter:"))
    t.send("ali")
    screen = t.expect_screen(line("Filter: ali"), line("1 item"), line("> [ ] alice@pairspaces.com"))
    assert BOB not in screen
    t.send("\r")  # leave filter mode, keeping the filter
    t.expect_screen(line("Filter: ali"), line("1 item"), line(SHORT_HELP))
    t.send(" ")
    t.expect_screen(line("> [x] alice@pairspaces.com"))
    t.send("\r")
    assert t.result() == [ALICE]


def test_tty_down_arrow_moves_like_j(tty):
    t = tty()
    t.expect_screen(SEED_SCREEN)
    t.send(DOWN)
    t.expect_screen(line("> [ ] bob@pairspaces.com"))
    t.send(" ")
    t.expect_screen(line("> [x] bob@pairspaces.com"))
    t.send(UP)
    t.expect_screen(line("> [ ] alice@pairspaces.com"), line("  [x] bob@pairspaces.com"))
    t.send("\r")
    assert t.result() == [BOB]


def test_tty_filter_takes_j_k_q_and_esc_clears_it(tty):
    t = tty()
    t.expect_screen(SEED_SCREEN)
    t.send(" ")  # select alice first: selections survive the filter
    t.expect_screen(line("> [x] alice@pairspaces.com"))
    t.send("/jkq")
    t.expect_screen(line("Filter: jkq"), line("0 items"))
    t.send("\x7f\x7f\x7f")  # backspace
    t.expect_screen(line("Filter:"), line("2 items"))
    t.send("bob")
    t.expect_screen(line("Filter: bob"), line("1 item"))
    t.send(ESC)
    screen = t.expect_screen(line("2 items"), line(SHORT_HELP))
    assert "Filter:" not in screen
    # Both rows are back, alice still selected, the cursor still on bob.
    assert screen.startswith(SEED_SCREEN.replace("> [ ] alice", "  [x] alice").replace("  [ ] bob", "> [ ] bob"))
    t.send("\r")
    assert t.result() == [ALICE]


def test_tty_help_toggle_and_select_all(tty):
    t = tty()
    t.expect_screen(SEED_SCREEN)
    t.send("?")
    t.expect_screen("a select all", "n select none")
    t.send("?")
    t.expect_screen(line(SHORT_HELP))
    t.send("a")
    t.expect_screen(line("> [x] alice@pairspaces.com"), line("  [x] bob@pairspaces.com"))
    t.send("\r")
    assert t.result() == [ALICE, BOB]


def test_tty_enter_with_nothing_selected_returns_an_empty_list(tty):
    t = tty()
    t.expect_screen(SEED_SCREEN)
    t.send("\r")
    assert t.result() == []


@pytest.mark.parametrize("key", [CTRL_C, ESC], ids=["ctrl-c", "esc"])
def test_tty_ctrl_c_and_esc_cancel(tty, key):
    t = tty()
    t.expect_screen(SEED_SCREEN)
    t.send(key)
    assert t.result() is None


def test_tty_long_list_fits_the_terminal(tty):
    many = [f"user{i:02d}@pairspaces.com" for i in range(60)]
    t = tty(many)
    screen = t.expect_screen(line("60 items"), line("> [ ] user00@pairspaces.com"), line(SHORT_HELP))
    assert "↓" in screen
    t.send("G")
    t.expect_screen(line("> [ ] user59@pairspaces.com"), line(SHORT_HELP))
    t.send(" \r")
    assert t.result() == ["user59@pairspaces.com"]
