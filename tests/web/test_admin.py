"""The admin page (issue 16) in Chromium against a real broker: admins manage users, groups,
templates and quotas and decide access requests (the waiting `pair login --request` is signed in
once approved here); every change needs the page's CSRF token; anyone else gets 403; axe-clean in
light and dark."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.broker import RealBroker
from tests.support.people import Person
from tests.support.processes import Output, clean_env, executable
from tests.web import pages
from tests.web.conftest import Screenshot
from tests.web.pages import sign_in

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Admin:
    email: str
    key_file: Path


def admin_of(broker: RealBroker) -> Admin:
    return Admin(broker.admin_email, broker.admin_key_file)


def row(page: Page, kind: str, key: str) -> object:
    return page.locator(f'[data-{kind}="{key}"]')


def test_an_admin_manages_the_broker_and_approves_a_waiting_request(
    page: Page, live_broker: RealBroker, team: dict[str, Person], tmp_path: Path, screenshot: Screenshot
) -> None:
    bob = team["bob"]
    home = tmp_path / "newcomer"
    env = clean_env(PAIR_CONFIG_DIR=str(home / "config"), HOME=str(home))
    newcomer = f"newcomer{id(page) % 100000}@example.com"
    waiting = subprocess.Popen(
        [executable("pair"), "login", newcomer, "--request", "--url", live_broker.url, "--message", "hello"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    output = Output(waiting)
    try:
        output.wait_for("waiting for an admin")
        sign_in(page, admin_of(live_broker))
        page.get_by_role("link", name="Admin").click()
        expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()

        # groups, members, quotas, templates
        page.get_by_label("New group's name").fill("eng")
        page.get_by_role("button", name="Create group").click()
        expect(page.locator("#flash")).to_have_text("Created the group eng.")
        page.get_by_label("Email to add to eng").fill(bob.email)
        page.get_by_role("button", name="Add to eng").click()
        expect(page.locator('[data-group="eng"] .members')).to_contain_text(bob.email)
        page.get_by_label("Compute limit of group eng").fill("6")
        page.get_by_role("button", name="Set quota of group eng").click()
        expect(page.locator("#flash")).to_have_text("eng: spaces unlimited, compute 6, storage unlimited.")
        page.get_by_label("Template name").fill("small")
        page.get_by_label("Compute units", exact=True).fill("2")
        page.get_by_label("Storage units", exact=True).fill("1")
        page.get_by_label("Default", exact=True).check()
        page.get_by_role("button", name="Add template").click()
        expect(page.locator('[data-template="small"]')).to_be_visible()
        page.get_by_label(f"Compute limit of {bob.email}").fill("4")
        page.get_by_role("button", name=f"Set the quota of {bob.email}").click()
        expect(page.locator(f'[data-user="{bob.email}"]')).to_contain_text("0 of 10 = 4 (own) + 6 (group eng)")
        assert "compute units  0     10" in bob.ok("quota")

        # the access request: approve it here, and the waiting CLI is signed in
        expect(page.locator(f'[data-request="{newcomer}"]')).to_contain_text("hello")
        screenshot(page, "admin.png")
        page.get_by_role("button", name=f"Approve {newcomer}").click()
        expect(page.locator("#flash")).to_contain_text(f"Approved {newcomer}")
        assert waiting.wait(timeout=15) == 0
        output.finish()
        assert f"as {newcomer}." in output.text()
        listed = subprocess.run(
            [executable("pair"), "spaces", "list", "--json"], capture_output=True, text=True, env=env, check=True
        )
        [space] = json.loads(listed.stdout)
        assert (space["owner"], space["role"]) == (newcomer, "owner")

        # reset a key: POST, 303 to /admin, the key shown once there (never in the URL)
        with page.expect_response(lambda r: r.url.endswith("/admin/user-reset")) as posted:
            page.get_by_role("button", name=f"Reset key of {bob.email}").click()
        assert posted.value.status == 303 and posted.value.headers["location"] == "/admin"
        key = page.locator("#new-key").inner_text()
        assert key.startswith("pair_ak_")
        assert page.url == f"{live_broker.url}/admin" and key not in page.url
        expect(page.locator("#flash")).to_contain_text(f"Gave {bob.email} a new auth key")
        expect(page.locator("#new-key-note")).to_contain_text(f"Shown this once: give it to {bob.email} now")
        assert not [c for c in page.context.cookies() if key in c["value"]]  # sealed, not carried readable
        # A reload is a GET: it sends no reset again (one audit row) and shows the key no more.
        with page.expect_response(lambda r: r.url.endswith("/admin")) as reloaded:
            page.reload()
        assert reloaded.value.request.method == "GET"
        expect(page.locator("#new-key")).to_have_count(0)
        assert key not in page.content()
        resets = json.loads(live_broker.admin("audit", "--action", "user.reset_key", "--json").stdout)
        assert [row["target"] for row in resets] == [bob.email]
        key_file = tmp_path / "bob.key"
        key_file.write_text(key + "\n")
        bob.ok("login", bob.email, "--key-file", str(key_file))  # the key shown is the one that works
        # the audit log with a filter
        page.get_by_label("Action").fill("group")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"action=group"))
        expect(page.locator("table.audit tbody tr")).to_have_count(2)  # group.add, group.member_add
    finally:
        if waiting.poll() is None:
            waiting.kill()
        waiting.wait(timeout=10)
        assert waiting.stdout is not None
        waiting.stdout.close()


def test_an_admin_resetting_their_own_key_sees_it_once_and_a_reload_sends_nothing(
    page: Page, live_broker: RealBroker, tmp_path: Path
) -> None:
    """Resetting your own key ends your sessions, this one too: the answer was the page itself,
    with the key, so a reload POSTed again (the browser's "resubmit the form?") and made another
    key. Now it is the same POST-redirect-GET as every reset: this browser gets a new session,
    the redirect's page shows the key once, and a reload is a GET."""
    me = Admin(f"selfreset{id(page) % 100000}@example.com", tmp_path / "me.key")
    added = live_broker.admin("users", "add", me.email, "--admin", "--key-file", str(me.key_file))
    assert added.returncode == 0, added.stderr
    cli = Person(live_broker, f"selfcli{id(page) % 100000}", tmp_path, ssh_key=False)
    cli.ok("login", me.email, "--key-file", str(me.key_file))  # the same admin's CLI session, which must end
    sign_in(page, me)
    page.goto("/admin")
    with page.expect_response(lambda r: r.url.endswith("/admin/user-reset")) as posted:
        page.get_by_role("button", name=f"Reset key of {me.email}").click()
    assert posted.value.status == 303 and posted.value.headers["location"] == "/admin"
    key = page.locator("#new-key").inner_text()
    assert key.startswith("pair_ak_") and key not in page.url
    expect(page.locator("#flash")).to_have_text(
        "You have a new auth key (shown below, once); your other sessions ended."
    )
    # Reproduction: the note said "give it to its owner now", as for anyone else's key.
    expect(page.get_by_role("heading", name="Your new auth key")).to_be_visible()
    expect(page.locator("#new-key-note")).to_have_text(
        "Shown this once: save it now, your old key no longer works"
        f" (you log in with pair login {me.email} --key-file FILE)."
    )
    with page.expect_response(lambda r: r.url.endswith("/admin")) as reloaded:
        page.reload()
    assert reloaded.value.request.method == "GET" and reloaded.value.status == 200
    expect(page.get_by_role("heading", name="Admin", exact=True)).to_be_visible()  # still signed in
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()
    resets = json.loads(live_broker.admin("audit", "--action", "user.reset_key", "--json").stdout)
    assert [row["target"] for row in resets].count(me.email) == 1  # the reload reset nothing
    assert cli.pair("whoami").returncode != 0  # the CLI's session ended with the old key
    me.key_file.write_text(key + "\n")
    cli.ok("login", me.email, "--key-file", str(me.key_file))  # the key shown is the one that works


def test_every_change_needs_the_token_and_non_admins_get_403(
    page: Page, live_broker: RealBroker, team: dict[str, Person]
) -> None:
    sign_in(page, admin_of(live_broker))
    page.goto("/admin")
    token = pages.csrf(page)
    actions = sorted(set(page.locator("form[method=post]").evaluate_all("fs => fs.map(f => f.getAttribute('action'))")))
    actions = [a for a in actions if a.startswith("/admin/")]
    assert len(actions) >= 10, actions
    for action in actions:
        for sent in ({}, {"csrf_token": "not-the-token"}):
            answer = page.request.post(action, form={"email": "x@example.com", "name": "x", **sent})
            assert answer.status == 403, (action, sent, answer.status)
    assert page.request.post("/admin/group-add", form={"name": "ok", "csrf_token": token}).status == 200

    browser = page.context.browser
    assert browser is not None
    sign_in_other = browser.new_context(base_url=live_broker.url)
    try:
        other = sign_in_other.new_page()
        sign_in(other, team["carol"])
        expect(other.get_by_role("link", name="Admin")).to_have_count(0)
        shown = other.goto("/admin")
        assert shown is not None and shown.status == 403
        expect(other.get_by_role("heading", name="This needs an admin account.")).to_be_visible()
        other.goto("/")
        theirs = pages.csrf(other)  # carol's own valid token: still not an admin
        refused = other.request.post("/admin/group-add", form={"name": "sneaky", "csrf_token": theirs})
        assert refused.status == 403
    finally:
        sign_in_other.close()
    page.goto("/admin")
    expect(page.locator('[data-group="sneaky"]')).to_have_count(0)


def test_the_admin_page_is_axe_clean(page: Page, live_broker: RealBroker, team: dict[str, Person]) -> None:
    source = pages.axe_source()
    sign_in(page, admin_of(live_broker))
    page.goto("/admin")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        pages.axe(page, source, f"the admin page ({scheme})")


def test_an_owner_shares_with_a_group_from_the_page_and_sees_template_and_quota(
    page: Page, live_broker: RealBroker, team: dict[str, Person]
) -> None:
    alice, bob, carol = team["alice"], team["bob"], team["carol"]
    group = f"team{alice.email.split('@')[0].removeprefix('alice')}"
    for args in (
        ("groups", "add", group),
        ("groups", "members", "add", group, bob.email, carol.email, alice.email),
        ("quota", "set", "--group", group, "--compute", "6"),
        ("quota", "set", alice.email, "--spaces", "5", "--compute", "4"),
    ):
        assert live_broker.admin(*args).returncode == 0
    pages.authorize(alice, "demo")
    sign_in(page, alice)
    # where each limit comes from, in `pair quota`'s words (pair.api.models.QuotaLine)
    expect(page.locator('#quota [data-quota="spaces"]')).to_have_text("Spaces 1 of 5 = 5 (own)")
    expect(page.locator('#quota [data-quota="compute"]')).to_have_text(
        f"compute units 0 of 10 = 4 (own) + 6 (group {group})"
    )
    storage = re.compile(r"storage units \d of unlimited \(nobody sets it\)")  # the default template's units
    expect(page.locator('#quota [data-quota="storage"]')).to_have_text(storage)
    assert f"4 (own) + 6 (group {group})" in alice.ok("quota")  # the same words as the CLI's
    demo = pages.card(page, "demo")
    demo.get_by_role("button", name="Share demo…").click()
    dialog = page.get_by_role("dialog", name="Share “demo”")
    dialog.get_by_role("radio", name=f"group {group}", exact=True).check()
    dialog.get_by_role("button", name=f"Share with group {group}").click()
    expect(page.get_by_role("status").filter(has_text="now shared")).to_have_text(
        f'"demo" is now shared with group {group}.'
    )
    assert [s["name"] for s in bob.spaces()] == [s["name"] for s in carol.spaces()] == ["demo"]
    demo.get_by_role("button", name=f"Stop sharing demo with group {group}").click()
    expect(page.get_by_role("status").filter(has_text="no longer")).to_contain_text(f"group {group}")
    assert bob.spaces() == []
