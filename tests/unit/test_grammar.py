"""pair.api.grammar: the one grammar for what the broker, the CLI and a container exchange."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.emails import normalize_email
from broker.errors import Problem
from pair.api import models as m
from pair.api.fields import check_facts, space_problem
from pair.api.grammar import (
    HOSTNAME_RE,
    LOGIN_USER_RE,
    SPACE_ID_RE,
    VERSION_RE,
    Invalid,
    host_key_problem,
    is_email,
    is_login_user,
)
from pair.api.models import ContainerFacts, Space

ED25519 = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
OTHER = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(32)).decode()
WHEN = datetime(2027, 1, 15, tzinfo=timezone.utc)
# What may never reach an ssh config, known_hosts, a shell word or a terminal from a grammar value.
DANGEROUS = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\;&|`$()\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.com",
        "bob+x@example.com",
        "john.doe-x@sub.example.co.uk",
        "a@localhost",
        "x@a.example",
        "jürgen@bücher.de",  # RFC 6531: letters of any script
        "o_k!#%*/=?^{|}~@example.com",  # RFC 5322 atext
    ],
)
def test_emails_people_use_stay_valid(email: str) -> None:
    assert is_email(email)


@pytest.mark.parametrize(
    "email",
    [
        "bob",
        "bob@",
        "@example.com",
        "a@b",
        "bob@example..com",
        ".bob@example.com",
        "bob.@example.com",
        "bob@-example.com",
        "b ob@example.com",
        "bob@exa mple.com",
        "bob\x1b[31m@example.com",
        "bob\n@example.com",
        "bob@example.com\n",
        "bob\u202e@example.com",  # a bidi override
        "<bob>@example.com",
        '"bob"@example.com',
        "o'brien@example.com",
        "bob@[127.0.0.1]",
        "a@b@example.com",
        "x" * 250 + "@example.com",
    ],
)
def test_emails_with_controls_quotes_or_brackets_are_refused(email: str) -> None:
    assert not is_email(email)


NOT_IN_EMAILS = re.compile(r"[\x00-\x20\x7f-\x9f\"'<>\\()\[\],;:\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


EMAIL_BODY = re.compile(m.EMAIL_BODY)
NAME_BODY = re.compile(m.SPACE_NAME_BODY)


@given(st.from_regex(EMAIL_BODY, fullmatch=True).filter(lambda e: len(e) <= 254))
def test_every_email_the_grammar_accepts_is_free_of_controls_quotes_and_brackets(email: str) -> None:
    assert is_email(email)
    assert not NOT_IN_EMAILS.search(email), email


@given(
    st.from_regex(EMAIL_BODY, fullmatch=True).filter(lambda e: len(e) < 254),
    st.from_regex(NOT_IN_EMAILS, fullmatch=True),
    st.integers(min_value=0),
)
def test_one_dangerous_character_anywhere_makes_an_email_invalid(email: str, bad: str, at: int) -> None:
    at %= len(email) + 1
    assert not is_email(email[:at] + bad + email[at:])


# Default_Ignorable_Code_Point (Unicode's DerivedCoreProperties.txt) outside the categories below:
# characters that render as nothing, so `bob` and `b<U+115F>ob` would look the same.
DEFAULT_IGNORABLE = [0x34F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180E, 0x180F, 0x3164, 0xFE00, 0xFE0F, 0xFFA0]
DEFAULT_IGNORABLE += [0x2065, 0xFFF0, 0xFFF8, 0x1BCA0, 0x1D173, 0xE0000, 0xE0041, 0xE0FFF]
invisible = st.one_of(
    st.characters(whitelist_categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co"]),
    st.sampled_from([chr(c) for c in DEFAULT_IGNORABLE]),
)


@settings(max_examples=300)
@given(st.from_regex(EMAIL_BODY, fullmatch=True).filter(lambda e: len(e) < 254), invisible, st.integers(min_value=0))
def test_an_invisible_character_anywhere_makes_an_email_invalid_for_cli_and_broker(
    email: str, bad: str, at: int
) -> None:
    """Reproduction: U+2060, U+00AD and tag characters passed, so two emails could look identical."""
    at %= len(email) + 1
    spoof = email[:at] + bad + email[at:]
    assert not is_email(spoof), ascii(spoof)
    with pytest.raises(Problem):
        normalize_email(spoof)


@pytest.mark.parametrize("email", ["b\u00e9b@example.com", "\u4f60\u597d@example.cn", "\U0001f600@example.com"])
def test_letters_and_symbols_of_any_script_still_pass(email: str) -> None:
    assert is_email(email)
    assert normalize_email(email) == email.lower()


@pytest.mark.parametrize("rule", [NAME_BODY, SPACE_ID_RE, LOGIN_USER_RE, HOSTNAME_RE, VERSION_RE])
@given(data=st.data())
def test_names_ids_users_hosts_and_versions_need_no_quoting(rule: re.Pattern[str], data: st.DataObject) -> None:
    text = data.draw(st.from_regex(rule, fullmatch=True))
    assert not DANGEROUS.search(text), text
    assert not text.startswith("-")


@pytest.mark.parametrize("user", ["root", "vscode", "dev_1", "_apt", "first.last", "a" * 32])
def test_posix_user_names(user: str) -> None:
    assert is_login_user(user)


@pytest.mark.parametrize("user", ["", "-rf", "dev\n", "dev user", "a" * 33, "dév", "x;y", "1abc", "root\x00"])
def test_not_user_names(user: str) -> None:
    assert not is_login_user(user)


def test_a_host_key_is_exactly_one_type_and_blob() -> None:
    assert host_key_problem(ED25519) is None
    for bad in (
        f"{ED25519}\n@revoked * {OTHER}",  # the issue's: a second line with a marker
        f"{ED25519} root@host",  # a comment
        f" {ED25519}",
        f"@cert-authority * {ED25519}",
        f'command="sh" {ED25519}',
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJunk",  # not a key
        "ssh-ed25519",
        "",
    ):
        assert host_key_problem(bad), bad


def test_user_key_types_are_not_host_keys() -> None:
    sk = base64.b64encode(
        b"\x00\x00\x00\x1ask-ssh-ed25519@openssh.com\x00\x00\x00\x20" + bytes(32) + b"\x00\x00\x00\x04ssh:"
    ).decode()
    assert "does not use for host keys" in (host_key_problem(f"sk-ssh-ed25519@openssh.com {sk}") or "")


def test_honest_facts_pass() -> None:
    check_facts(ContainerFacts())
    check_facts(
        ContainerFacts(
            hostname="codespaces-1a2b3c",
            platform="codespaces",
            cpus=2.5,
            memory_bytes=8 << 30,
            disk_bytes=32 << 30,
            login_user="vscode",
            host_keys=[ED25519, OTHER],
            pair_version="0.1.0+local.1",
        )
    )


@pytest.mark.parametrize(
    ("facts", "fragment"),
    [
        (ContainerFacts(login_user="dev\nHost *"), "'dev\\nHost *' is not a POSIX user name."),
        (ContainerFacts(host_keys=[f"{ED25519}\n@revoked * {OTHER}"]), "is not an SSH host key."),
        (ContainerFacts(host_keys=["ssh-ed25519 AAAA"]), "bad SSH host key"),
        (ContainerFacts(host_keys=[ED25519] * 17), "is not a list of host keys."),
        (
            ContainerFacts(hostname="h\x1b]0;TITLE\x07\x1b[31mRED"),
            "'h\\x1b]0;TITLE\\x07\\x1b[31mRED' is not a host name.",
        ),
        (ContainerFacts(pair_version="1.0\x1b[2J"), "'1.0\\x1b[2J' is not a version."),
        (ContainerFacts(cpus=-1), "-1 is not a CPU count."),
        (ContainerFacts(cpus=float("nan")), "is not a CPU count."),
        (ContainerFacts(memory_bytes=-5), "-5 is not a number of bytes."),
    ],
)
def test_facts_that_do_not_fit_are_refused_naming_the_fact(facts: ContainerFacts, fragment: str) -> None:
    with pytest.raises(Invalid) as caught:
        check_facts(facts)
    assert fragment in caught.value.message
    assert "\x1b" not in caught.value.message and "\n" not in caught.value.message
    assert caught.value.hint and "regex" not in caught.value.hint  # the fact type's rule, in words


def space(**fields: object) -> Space:
    base: dict[str, object] = {
        "id": "sp_abc",
        "name": "demo",
        "owner": "alice@example.com",
        "role": "shared",
        "state": "running",
        "created_at": WHEN,
        "updated_at": WHEN,
        "container": ContainerFacts(host_keys=[ED25519]),
    }
    return Space(**{**base, **fields})  # type: ignore[arg-type]


def test_a_space_from_the_broker_is_checked_whole() -> None:
    assert space_problem(space()) is None
    assert "name" in (space_problem(space(name='x\nMatch exec "touch /tmp/PWNED"\nHost y')) or "")
    assert "id" in (space_problem(space(id="sp_x; touch /tmp/p")) or "")
    assert "owner" in (space_problem(space(owner="a@b.example\nHost *")) or "")
    assert "facts: 'a\\nb' is not a POSIX user name" in (
        space_problem(space(container=ContainerFacts(login_user="a\nb"))) or ""
    )
    assert "host key" in (space_problem(space(container=ContainerFacts(host_keys=[f"{ED25519}\n@revoked"]))) or "")
