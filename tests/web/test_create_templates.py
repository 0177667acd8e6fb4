"""The create form's template picker, against a real broker with templates: it lists the broker's
templates (the default chosen), the Space gets the one picked, and the broker checks the choice
as it checks `pair spaces authorize --template` (an unknown name, a quota), tying the refusal to
the picker. Its own module: the templates and quotas it sets would change the other create tests'
broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support.broker import RealBroker, real_broker
from tests.support.people import Person
from tests.web.pages import axe, axe_source, no_raw_errors, sign_in

pytestmark = pytest.mark.integration


def admin(broker: RealBroker, *args: str) -> None:
    result = broker.admin(*args)
    assert result.returncode == 0, result.stderr


def test_the_template_picker_lists_the_templates_and_the_broker_checks_the_choice(
    browser: Browser, live_broker: RealBroker, team: dict[str, Person]
) -> None:
    alice = team["alice"]
    admin(live_broker, "templates", "add", "small", "--compute", "2", "--storage", "1", "--default",
          "--description", "2 CPUs")  # fmt: skip
    admin(live_broker, "templates", "add", "large", "--compute", "3", "--storage", "5")
    admin(live_broker, "quota", "set", alice.email, "--storage", "6")
    context = browser.new_context(base_url=live_broker.url)
    try:
        page = context.new_page()
        sign_in(page, alice)
        page.goto("/spaces/new")
        picker = page.get_by_label("Template")
        expect(picker).to_have_value("small")  # the default, chosen
        options = picker.locator("option")
        expect(options).to_have_text(
            [
                "large: 3 compute units, 5 storage units",
                "small: 2 compute units, 1 storage unit (the default) — 2 CPUs",
            ]
        )
        axe(page, axe_source(), "the create form with templates")

        # The one picked is the Space's, as --template makes it.
        page.get_by_label("Name").fill("big_one")
        picker.select_option("large")
        page.get_by_role("button", name="Create Space").click()
        expect(page.get_by_role("heading", name="You're ready to bootstrap your Space “big_one”.")).to_be_visible()
        assert [(s["name"], s["template"]) for s in alice.spaces()] == [("big_one", "large")]

        # Past the quota: the CLI's sentence, tied to the picker, which keeps the choice; nothing made.
        page.goto("/spaces/new")
        page.get_by_label("Name").fill("big_two")
        page.get_by_label("Template").select_option("large")
        page.get_by_role("button", name="Create Space").click()
        expect(page.get_by_role("alert")).to_contain_text("You are using 5 of 6 storage units; template large needs 5.")
        expect(page.get_by_label("Template")).to_be_focused()
        expect(page.get_by_label("Template")).to_have_attribute("aria-invalid", "true")
        expect(page.get_by_label("Template")).to_have_value("large")
        assert [s["name"] for s in alice.spaces()] == ["big_one"]

        # A name the picker never offered (a forged form) is refused by the broker's rule.
        page.locator("#space-template option:checked").evaluate("o => { o.value = 'gpu_monster'; }")
        page.get_by_label("Name").fill("forged")
        page.get_by_role("button", name="Create Space").click()
        expect(page.get_by_role("alert")).to_have_text(
            "There is no template named 'gpu_monster' on this broker. Pick one of the templates listed."
        )
        assert [s["name"] for s in alice.spaces()] == ["big_one"]

        # The default fits: left as it is, the form makes a small Space.
        page.goto("/spaces/new")
        page.get_by_label("Name").fill("little")
        page.get_by_role("button", name="Create Space").click()
        expect(page.get_by_role("heading", name="You're ready to bootstrap your Space “little”.")).to_be_visible()
        assert sorted((s["name"], s["template"]) for s in alice.spaces()) == [("big_one", "large"), ("little", "small")]
        no_raw_errors(page)
    finally:
        context.close()


def test_without_a_default_the_picker_asks_for_a_choice(browser: Browser, tmp_path: Path) -> None:
    """With templates but no default, the picker starts on a placeholder the browser will not
    submit, and the broker refuses the form without a choice too (no script here)."""
    with real_broker(tmp_path / "data") as broker:
        alice = Person(broker, "alice", tmp_path / "people", ssh_key=False)
        admin(broker, "templates", "add", "spare", "--compute", "1", "--storage", "1")
        context = browser.new_context(base_url=broker.url, java_script_enabled=False)
        try:
            page = context.new_page()
            sign_in(page, alice)
            page.goto("/spaces/new")
            picker = page.get_by_label("Template")
            expect(picker).to_have_value("")
            expect(picker).to_have_attribute("required", "")
            page.get_by_role("button", name="Create Space").click()
            assert picker.evaluate("p => p.validity.valueMissing")  # the browser holds the form back
            assert alice.spaces() == []
            picker.evaluate("p => p.removeAttribute('required')")
            page.get_by_role("button", name="Create Space").click()
            expect(page.get_by_role("alert")).to_have_text(
                "This broker has no default template, so a new Space must name one. Pick one of the templates listed."
            )
            assert alice.spaces() == []
            page.get_by_label("Template").select_option("spare")
            page.get_by_role("button", name="Create Space").click()
            expect(page.get_by_role("heading", name="You're ready to bootstrap your Space")).to_be_visible()
            assert [s["template"] for s in alice.spaces()] == ["spare"]
        finally:
            context.close()
