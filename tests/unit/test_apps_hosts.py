"""broker.apps.hosts: the apps domain setting, app addresses, Space labels and owner handles."""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from broker import names
from broker.apps.hosts import (
    HANDLE_MAX,
    LABEL_MAX,
    SPACE_LABEL_MAX,
    AddressError,
    AppAddress,
    AppsDomain,
    handle_candidates,
    handle_from_email,
    handle_with_suffix,
    is_segment,
    space_label,
)

LDH_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"


def segments(max_size: int) -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,4}", fullmatch=True).map(lambda s: s[:max_size].rstrip("-"))


addresses = st.builds(AppAddress, st.integers(1, 65535), segments(SPACE_LABEL_MAX), segments(HANDLE_MAX))
suffixes = st.lists(st.from_regex(LDH_LABEL, fullmatch=True), min_size=1, max_size=4).map(".".join)
domains = st.builds(
    AppsDomain, suffixes.filter(lambda s: not s.split(".")[-1].isdigit()), st.none() | st.integers(1, 65535)
)
space_names = st.from_regex(names.NAME_RE, fullmatch=True)


# -- addresses ------------------------------------------------------------------------------


@given(domains, addresses, st.booleans(), st.none() | st.integers(1, 65535))
def test_a_formatted_host_parses_back_to_its_address_in_any_case(
    domain: AppsDomain, address: AppAddress, upper: bool, port: int | None
) -> None:
    host = domain.host(address)
    assert len(host.split(".")[0]) <= LABEL_MAX
    assert len(host) <= 253
    sent = (host.upper() if upper else host) + (f":{port}" if port else "")
    assert domain.parse_host(sent) == address
    assert domain.covers(sent)


NEAR_MISSES = st.sampled_from(
    [
        "{port}--{space}--{owner}.{suffix}.",
        "{port}--{space}--{owner}.x.{suffix}",
        "x.{port}--{space}--{owner}.{suffix}",
        "{port}--{space}--{owner}.{suffix}.evil.com",
        "{port}--{space}--{owner}.evil{suffix}",
        "{port}--{space}--{owner}.evil-{suffix}",
        "{port}--{space}--{owner}{suffix}",
        "{port}-{space}--{owner}.{suffix}",
        "{port}--{space}---{owner}.{suffix}",
        "{port}---{space}--{owner}.{suffix}",
        "{port}--{space}-{owner}.{suffix}",
        "{port}--{space}--{owner}--x.{suffix}",
        "{port}--{space}--{space}--{owner}.{suffix}",
        "0{port}--{space}--{owner}.{suffix}",
        "{port}00000--{space}--{owner}.{suffix}",  # above 65535
        "{port}--{space}_x--{owner}.{suffix}",
        "{port}--{space}--{owner}-.{suffix}",
        "{port}--{space}--{owner}",
        "[{port}--{space}--{owner}.{suffix}]",
        "{port}--{space}--{owner}.{suffix}:x",
    ]
)


@given(domains, addresses, NEAR_MISSES)
def test_a_near_miss_of_a_valid_host_is_refused(domain: AppsDomain, address: AppAddress, shape: str) -> None:
    host = shape.format(port=address.port, space=address.space, owner=address.owner, suffix=domain.suffix)
    assert domain.parse_host(host) is None


PIECES = st.text(alphabet="az09-_.:AZé ", max_size=40)


@given(domains, PIECES, st.integers(0, 999999), PIECES, PIECES, st.none() | st.text(max_size=6))
@example(AppsDomain("localhost"), "", 80, "a_b", "alice", None)
@example(AppsDomain("localhost"), "", 8080, "a--b", "alice", None)
@example(AppsDomain("localhost"), "", 8080, "demo-", "alice", None)
@example(AppsDomain("localhost"), "", 65536, "demo", "alice", None)
@example(AppsDomain("localhost"), "", 8080, "d" * 31, "alice", None)
@example(AppsDomain("localhost"), "", 8080, "demo", "a" * 25, None)
@example(AppsDomain("localhost"), "", 0, "demo", "alice", None)
@example(AppsDomain("localhost"), "", 8080, "demo", "alice", "x")
@example(AppsDomain("localhost"), "", 8080, "Demo", "alice", "8000")
def test_any_host_accepted_is_the_canonical_host_of_its_address(
    domain: AppsDomain, prefix: str, port: int, space: str, owner: str, host_port: str | None
) -> None:
    host = f"{prefix}{port}--{space}--{owner}.{domain.suffix}" + (f":{host_port}" if host_port is not None else "")
    address = domain.parse_host(host)
    if address is not None:
        # Whatever is accepted is exactly (up to case and a numeric port) the host of a valid
        # address under this domain: no other domain, no invalid label, one origin per address.
        assert host.lower().partition(":")[0] == domain.host(address)
        assert 1 <= address.port <= 65535
        assert is_segment(address.space) and len(address.space) <= SPACE_LABEL_MAX
        assert is_segment(address.owner) and len(address.owner) <= HANDLE_MAX


def test_examples_of_hosts() -> None:
    domain = AppsDomain.parse("*.apps.pair.example.com")
    assert domain.parse_host("8080--dynamic-stark--alice.apps.pair.example.com") == AppAddress(
        8080, "dynamic-stark", "alice"
    )
    assert domain.parse_host("8080--Dynamic-Stark--ALICE.Apps.Pair.Example.com:443") == AppAddress(
        8080, "dynamic-stark", "alice"
    )
    for refused in (
        "8080--dynamic_stark--alice.apps.pair.example.com",  # `_` is not a hostname character
        "8080--demo--alice.apps.pair.example.com.",  # another origin to a browser
        "8080--demo--alice.pair.example.com",
        "8080--demo--alice.apps.pair.example.com.evil.com",
        "8080--demo--alice.evilapps.pair.example.com",
        "x.8080--demo--alice.apps.pair.example.com",
        "08080--demo--alice.apps.pair.example.com",
        "8080--demo--alice.apps.pair.example.com:http",
        "pair.example.com",
        "",
    ):
        assert domain.parse_host(refused) is None, refused


def test_covers_routes_everything_under_the_domain_to_the_app_side() -> None:
    domain = AppsDomain.parse("*.pair.example.com")
    assert domain.covers("8080--demo--alice.pair.example.com")
    assert domain.covers("a.b.pair.example.com:8443")  # not an app: answered 404 there, not by the broker's pages
    assert domain.covers("junk.pair.example.com.")
    assert not domain.covers("pair.example.com")  # the broker's own host beside its apps
    assert not domain.covers("evilpair.example.com")
    assert not domain.covers("[::1]:8000")


def test_the_origin_shows_the_settings_port() -> None:
    address = AppAddress(5173, "demo", "alice")
    assert AppsDomain.parse("*.localhost:8000").origin(address, "http") == "http://5173--demo--alice.localhost:8000"
    assert (
        AppsDomain.parse("*.Apps.Example.com").origin(address, "https") == "https://5173--demo--alice.apps.example.com"
    )


def test_an_address_refuses_parts_that_do_not_fit_one_label() -> None:
    for port, space, owner in ((0, "demo", "alice"), (65536, "demo", "alice"), (80, "a_b", "alice"),
                               (80, "a--b", "alice"), (80, "demo", "-alice"), (80, "s" * 31, "alice"),
                               (80, "demo", "o" * 25)):  # fmt: skip
        with pytest.raises(AddressError):
            AppAddress(port, space, owner)


# -- the setting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "suffix", "port"),
    [
        ("*.apps.pair.example.com", "apps.pair.example.com", None),
        ("*.localhost", "localhost", None),
        ("*.localhost:8000", "localhost", 8000),
        ("  *.Apps.Example.COM ", "apps.example.com", None),
        ("*.xn--bcher-kva.example", "xn--bcher-kva.example", None),
    ],
)
def test_the_apps_domain_setting(setting: str, suffix: str, port: int | None) -> None:
    domain = AppsDomain.parse(setting)
    assert (domain.suffix, domain.port) == (suffix, port)
    assert AppsDomain.parse(str(domain)) == domain


@pytest.mark.parametrize(
    "setting",
    [
        "apps.example.com",
        "*",
        "*.",
        "**.example.com",
        "*.example..com",
        "*.-apps.example.com",
        "*.apps-.example.com",
        "*.apps_x.example.com",
        "*.127.0.0.1",
        "*.localhost:0",
        "*.localhost:65536",
        "*.localhost:80a",
        "*.localhost:",
        "https://*.example.com",
        "*." + "a" * 64 + ".com",
        "*." + ".".join(["abcdefghi"] * 20),
    ],
)
def test_the_apps_domain_setting_refuses(setting: str) -> None:
    with pytest.raises(AddressError) as caught:
        AppsDomain.parse(setting)
    assert repr(setting) in str(caught.value) or "too long" in str(caught.value)


# -- Space labels ---------------------------------------------------------------------------


@given(space_names, st.booleans())
def test_every_space_name_has_a_label_that_fits(name: str, hashed: bool) -> None:
    label = space_label(name, hashed=hashed)
    assert is_segment(label)
    assert len(label) <= SPACE_LABEL_MAX
    assert label == space_label(name, hashed=hashed)  # deterministic: the store can recompute it
    AppAddress(65535, label, "o" * HANDLE_MAX)  # the longest address still fits one label


@given(space_names, space_names)
def test_hashed_labels_tell_different_names_apart(a: str, b: str) -> None:
    assume(a != b)
    assert space_label(a, hashed=True) != space_label(b, hashed=True)


def test_generated_names_keep_a_readable_label() -> None:
    longest = f"{max(names.ADJECTIVES, key=len)}_{max(names.SURNAMES, key=len)}"
    assert space_label(longest) == longest.replace("_", "-")
    assert space_label("dynamic_stark") == "dynamic-stark"
    assert space_label("demo") == "demo"


def test_names_a_label_cannot_hold_fall_back_to_the_hashed_form() -> None:
    readable_part = {"a--b": "a-b-", "demo-": "demo-", "demo_": "demo-", "x" * 40: "x" * 23 + "-", "a__b": "a-b-"}
    for name, prefix in readable_part.items():
        label = space_label(name)
        assert label == space_label(name, hashed=True)
        assert label.startswith(prefix)
        assert len(label) == len(prefix) + 6


# -- owner handles --------------------------------------------------------------------------


@given(st.text(max_size=80), st.text(max_size=30))
@example("Jane.Doe+pair", "example.com")
@example("---", "example.com")
@example("é", "x")
def test_a_handle_is_always_a_valid_segment(local: str, domain: str) -> None:
    handle = handle_from_email(f"{local}@{domain}")
    assert is_segment(handle)
    assert len(handle) <= HANDLE_MAX


def test_handles_from_emails() -> None:
    assert handle_from_email("Jane.Doe+pair@example.com") == "jane-doe-pair"
    assert handle_from_email("josé@example.com") == "jose"
    assert handle_from_email("___@example.com") == "user"
    assert handle_from_email("a" * 40 + "@example.com") == "a" * HANDLE_MAX
    assert handle_from_email("bob@localhost") == "bob"


@given(st.text(max_size=60), st.integers(2, 10**6))
def test_suffixed_handles_stay_valid_and_distinct(local: str, number: int) -> None:
    base = handle_from_email(local + "@example.com")
    suffixed = handle_with_suffix(base, number)
    assert is_segment(suffixed)
    assert len(suffixed) <= HANDLE_MAX
    assert suffixed.endswith(f"-{number}")
    assert suffixed != base


def test_handle_candidates_go_plain_then_numbered() -> None:
    candidates = handle_candidates("alice@example.com")
    assert [next(candidates) for _ in range(3)] == ["alice", "alice-2", "alice-3"]
    with pytest.raises(ValueError, match="starts at 2"):
        handle_with_suffix("alice", 1)
