"""TLS in front of real brokers, as operators run it: a test CA (trustme), a certificate for
127.0.0.1 and localhost, and Debian's nginx terminating TLS on loopback and proxying HTTP and
WebSocket upgrades to one or more `pair-broker serve` (docs/operations.md shows the same
`location` block; a test holds the two in step).

The replica tests reuse `tls_proxy` with several upstreams: nginx sends each request to one of
them (round robin), takes a replica that refuses connections or answers 502/503 out of the
rotation for `fail_timeout`, passes /healthz through for outside checks, and keeps idle
WebSockets (streams, agents' channels) open for an hour.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.support.container import free_port
from tests.support.processes import Output, stop
from tests.support.tools import need_tool

# What the docs show operators, directive for directive (tests/integration/test_tls.py checks this
# block and the lines below).
LOCATION = """\
    location / {
        proxy_pass http://pair_broker;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;
        proxy_buffering off;
        proxy_request_buffering off;
        client_max_body_size 64m;
        proxy_next_upstream error timeout http_502 http_503;
    }
"""

# Replicas reach each other at /internal/ on their own addresses; the public side never passes it.
INTERNAL = "location /internal/ { return 404; }"
HEALTHZ = "location = /healthz { proxy_pass http://pair_broker; }"  # for outside health checks
UPGRADE_MAP = "map $http_upgrade $connection_upgrade { default upgrade; '' close; }"
PASSIVE_CHECK = "max_fails=1 fail_timeout=2s;"  # each upstream `server` line's: a replica that refuses is skipped


@dataclass
class TestCA:
    """A CA made for one test, and a broker certificate it issued."""

    ca: trustme.CA
    ca_file: Path  # the CA certificate (PEM): what SSL_CERT_FILE points at
    cert_file: Path  # the broker's chain (PEM), for nginx
    key_file: Path

    __test__ = False  # not a pytest class


def test_ca(directory: Path, *names: str) -> TestCA:
    """A fresh CA in `directory` and a certificate for `names` (default 127.0.0.1 and localhost)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="pair tests")
    leaf = ca.issue_cert(*(names or ("127.0.0.1", "localhost")))
    made = TestCA(ca, directory / "ca.pem", directory / "broker.pem", directory / "broker.key")
    ca.cert_pem.write_to_path(str(made.ca_file))
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(made.cert_file), append=True)
    leaf.private_key_pem.write_to_path(str(made.key_file))
    return made


test_ca.__test__ = False  # type: ignore[attr-defined]  # a fixture helper, not a test


def nginx_conf(work: Path, port: int, upstreams: list[str], cert: Path, key: Path) -> str:
    servers = "".join(f"        server {u} {PASSIVE_CHECK}\n" for u in upstreams)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "".join(f"    {kind}_temp_path {work}/{kind};\n" for kind in kinds)
    return (
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {work}/nginx.pid;\nerror_log stderr notice;\nworker_processes 1;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    access_log off;\n"
        f"{temp}"
        f"    {UPGRADE_MAP}\n"
        f"    upstream pair_broker {{\n{servers}    }}\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port} ssl;\n"
        f"        ssl_certificate {cert};\n"
        f"        ssl_certificate_key {key};\n"
        f"        {HEALTHZ}\n"
        f"        {INTERNAL}\n" + "".join(f"    {line}\n" for line in LOCATION.splitlines()) + "    }\n"
        "}\n"
    )


@dataclass
class TlsProxy:
    url: str  # https://127.0.0.1:PORT
    port: int
    output: Output


@contextmanager
def tls_proxy(work: Path, upstreams: list[str], ca: TestCA, *, port: int | None = None) -> Iterator[TlsProxy]:
    """nginx on 127.0.0.1:`port` (a free one if None) terminating TLS with `ca`'s certificate
    and proxying to `upstreams` (HOST:PORT each). Ready once nginx has started its worker."""
    nginx = need_tool("nginx")
    work.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = work / "nginx.conf"
    conf.write_text(nginx_conf(work, port, upstreams, ca.cert_file, ca.key_file))
    proc = subprocess.Popen(
        [nginx, "-p", str(work), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(proc)
    try:
        output.wait_for(r"start worker process")
        yield TlsProxy(f"https://127.0.0.1:{port}", port, output)
    finally:
        stop(proc)
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()
