"""broker.apps.hosts.host_name, the one parser of the Host header the broker's apps gate decides
on: a malformed Host (empty or odd port, characters no host name has) is None, never a name the
gate could file on the broker's side by mistake (issue 12's security review)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.apps.hosts import AppsDomain, host_name

DOMAIN = AppsDomain.parse("*.apps.example.com")
APP = "45763--demo--alice.apps.example.com"
NAMES = st.sampled_from([APP, APP.upper(), "pair.example.com", "127.0.0.1", "localhost", "[::1]"])
GOOD_PORTS = st.integers(1, 65535).map(str)
BAD_PORTS = st.one_of(
    st.just(""),
    st.just("0"),
    st.integers(65536, 10**6).map(str),
    st.text(alphabet="0123456789:abc/@", min_size=1, max_size=6).filter(lambda p: not p.isdigit()),
)


@given(NAMES, st.one_of(st.none(), GOOD_PORTS))
def test_a_well_formed_host_gives_its_name(name: str, port: str | None) -> None:
    host = name if port is None else f"{name}:{port}"
    assert host_name(host) == name.lower()


@given(NAMES, BAD_PORTS)
def test_a_malformed_port_is_refused_whatever_the_name(name: str, port: str) -> None:
    assert host_name(f"{name}:{port}") is None


@given(st.text(min_size=1, max_size=20))
def test_only_host_characters_make_a_name(text: str) -> None:
    name = host_name(text)
    if name is not None:
        assert name == name.lower() and not any(c in name for c in ' /?#@\\"<>')
        assert DOMAIN.covers(text) == name.rstrip(".").endswith(".apps.example.com")


def test_the_host_seen_in_the_attack() -> None:
    assert host_name("45763--demo--alice.localhost:") is None
