"""What a self-hosted team needs besides the broker, served by the broker itself.

- `GET /install.sh`: the container installer (shipped in the wheel as broker/static/install.sh;
  in a source checkout, the repository's top-level install.sh).
- `GET /download/pair.whl`: a wheel of the `pair` package this broker runs with, built in memory
  on first request from the installed files, so the CLI a container installs always speaks this
  broker's API. It holds `pair/**` and a .dist-info named pair-spaces whose Requires-Dist are the
  distribution's base dependencies (no extras: the broker's never reach a container).

    curl -fsSL https://BROKER/install.sh | sh -s -- --package broker --broker-url https://BROKER
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import pair
from broker.errors import Problem

DISTRIBUTION = "pair-spaces"
ENTRY_POINTS = "[console_scripts]\npair = pair.__main__:main\n"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same files always make the same bytes (and ETag)
_EXTRA = re.compile(r"""\bextra\s*==""")


@dataclass(frozen=True)
class Wheel:
    filename: str
    data: bytes
    sha256: str


def install_script_path(package_dir: Path | None = None) -> Path:
    """broker/static/install.sh in an installed wheel, else the checkout's top-level install.sh."""
    here = package_dir or Path(__file__).resolve().parent
    for candidate in (here / "static" / "install.sh", here.parent / "install.sh"):
        if candidate.is_file():
            return candidate
    raise Problem(
        404,
        "This broker has no install.sh to serve.",
        "Install the broker from its wheel (which ships install.sh), or run it from a source checkout.",
        "not_found",
    )


def base_requirements(requires: Iterable[str]) -> list[str]:
    """The requirements that apply without extras (`; extra == "broker"` ones are dropped)."""
    return [r for r in requires if not _EXTRA.search(r.partition(";")[2])]


def package_files(package_dir: Path) -> list[Path]:
    """Every file of the package, sorted; no bytecode caches or hidden files."""
    return sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.relative_to(package_dir).parts
        and not any(part.startswith(".") for part in p.relative_to(package_dir).parts)
        and p.suffix not in (".pyc", ".pyo")
    )


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(
    package_dir: Path,
    version: str,
    requires: Iterable[str],
    requires_python: str | None = None,
    summary: str = "",
) -> Wheel:
    """A pure-Python wheel (py3-none-any) of `package_dir` as distribution pair-spaces."""
    dist_info = f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {version}"]
    if summary:
        metadata.append(f"Summary: {summary}")
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    metadata += [f"Requires-Dist: {r}" for r in base_requirements(requires)]
    members: list[tuple[str, bytes]] = [
        (f"{package_dir.name}/{p.relative_to(package_dir).as_posix()}", p.read_bytes())
        for p in package_files(package_dir)
    ]
    members += [
        (f"{dist_info}/METADATA", ("\n".join(metadata) + "\n").encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: pair-broker\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", ENTRY_POINTS.encode()),
    ]
    record = [_record_line(name, data) for name, data in members] + [f"{dist_info}/RECORD,,"]
    members.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    data = buffer.getvalue()
    filename = f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"
    return Wheel(filename, data, hashlib.sha256(data).hexdigest())


@cache
def pair_wheel() -> Wheel:
    """The wheel of the installed `pair`, built once per process."""
    try:
        meta = importlib.metadata.metadata(DISTRIBUTION)
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise Problem(
            503,
            f"This broker cannot build pair's wheel: the {DISTRIBUTION} distribution is not installed.",
            "Install the broker with pip (pip install 'pair-spaces[broker]'), not by copying files.",
            "unavailable",
        ) from exc
    return build_wheel(
        Path(pair.__file__).resolve().parent,
        pair.__version__,
        requires,
        str(meta.json.get("requires_python") or "") or None,
        str(meta.json.get("summary") or ""),
    )


async def install_script(request: Request) -> Response:
    return Response(install_script_path().read_bytes(), media_type="text/x-shellscript")


async def download_wheel(request: Request) -> Response:
    wheel = await run_in_threadpool(pair_wheel)
    headers = {"Content-Disposition": f'attachment; filename="{wheel.filename}"', "ETag": f'"{wheel.sha256}"'}
    return Response(wheel.data, media_type="application/octet-stream", headers=headers)


ROUTES = [
    Route("/install.sh", install_script, methods=["GET"]),
    Route("/download/pair.whl", download_wheel, methods=["GET"]),
]
