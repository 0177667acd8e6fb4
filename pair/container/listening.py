"""Which TCP ports listen in the container, as Codespaces detects them for its port list: the
LISTEN sockets in /proc/net/tcp and /proc/net/tcp6 bound to loopback or to every address (a
socket bound to another address cannot be reached at 127.0.0.1, which is all the agent dials).

The files' format is the kernel's (`tcp4_seq_show`/`tcp6_seq_show`, net/ipv4/tcp_ipv4.c): one
line per socket, `sl local_address rem_address st …`, the address as hex of the in-memory bytes
(each 32-bit word in host order) then `:` and the port in hex; state 0A is TCP_LISTEN.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Collection, Iterable
from pathlib import Path

LISTEN = "0A"  # include/net/tcp_states.h: TCP_LISTEN = 10
TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def _address(hex_text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if len(raw) not in (4, 16):
        return None
    # Each 32-bit word was printed as a host-order integer: undo that per word.
    words = b"".join(int.from_bytes(raw[i : i + 4], "big").to_bytes(4, sys.byteorder) for i in range(0, len(raw), 4))
    return ipaddress.IPv4Address(words) if len(words) == 4 else ipaddress.IPv6Address(words)


def _reachable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Bound where a connection to 127.0.0.1 arrives: loopback or every address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def parse(lines: Iterable[str]) -> set[int]:
    """The ports of the LISTEN sockets in one table's lines (its header line is skipped)."""
    ports: set[int] = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[3] != LISTEN:
            continue
        host, _, port = fields[1].partition(":")
        address = _address(host)
        if address is not None and _reachable(address) and port:
            try:
                ports.add(int(port, 16))
            except ValueError:
                continue
    return ports


def listening(exclude: Collection[int] = (), tables: Iterable[Path] = TABLES) -> list[int]:
    """The ports listening in this network namespace on loopback or every address, sorted,
    less `exclude` (sshd's). A table that cannot be read counts as empty."""
    found: set[int] = set()
    for table in tables:
        try:
            found |= parse(table.read_text().splitlines()[1:])
        except OSError:
            continue
    return sorted(found - set(exclude))
