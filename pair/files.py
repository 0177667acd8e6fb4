"""Files a person names, and the secret files pair writes.

- `read_small_text`: the text of a small file a person pointed pair at (a key file, a public
  key): regular files only and a bounded read, so /dev/zero, a FIFO or a directory is a clear
  error instead of a hang or a traceback.
- `check_new_file` / `write_new_file`: the one rule for a secret written to a path a person
  names (--output, --key-file): checked before anything else changes, regular files only (no
  device, FIFO, directory or symlink), "-" for standard output where a command allows it.
- `write_private`: atomically (temp file + rename in the same directory), 0600 from the first
  byte, so a reader never sees a half-written token and nobody else ever can read it.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from pair.api.errors import PairError

MAX_TEXT = 64 * 1024  # bytes; far above any auth key or SSH public key


def read_small_text(path: Path, *, what: str, hint: str = "", limit: int = MAX_TEXT) -> str:
    """The UTF-8 text (a BOM dropped) of the regular file `path`, at most `limit` bytes.

    Raises PairError naming `what` ("the key file") with `hint` when the file is missing,
    unreadable, a directory, a device, FIFO or socket (whose read could block or never end),
    larger than `limit`, or not UTF-8 (read_small_bytes)."""
    data = read_small_bytes(path, what=what, hint=hint, limit=limit)
    assert data is not None
    return _text(data, limit, f"{what} {path}", hint)


def read_small_bytes(
    path: Path, *, what: str, hint: str = "", limit: int = MAX_TEXT, missing_ok: bool = False
) -> bytes | None:
    """The bytes of the regular file `path` (None when it does not exist and `missing_ok`).

    Raises PairError naming `what` with `hint` when it is missing, unreadable, a directory, a
    device, FIFO or socket, or larger than `limit`. Opening never blocks: O_NONBLOCK keeps a
    FIFO without a writer from waiting, and the read happens only once fstat says the file is
    regular (a symlink to /dev/zero is a device, so it is refused too)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        raise PairError(f"Cannot read {what} {path}: {exc.strerror}.", hint) from exc
    except OSError as exc:
        raise PairError(f"Cannot read {what} {path}: {exc.strerror}.", hint) from exc
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise PairError(f"{path} is a directory, not {what}.", hint)
        if not stat.S_ISREG(mode):
            raise PairError(f"{path} is not a regular file (a device, pipe or socket), so it is not {what}.", hint)
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise PairError(f"Cannot read {what} {path}: {exc.strerror}.", hint) from exc
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        described = f"{what} {path}"
        raise PairError(f"{described[:1].upper() + described[1:]} is too large (over {limit // 1024} KiB).", hint)
    return data


def read_small_stdin(*, what: str, hint: str = "", limit: int = MAX_TEXT, stream: TextIO | None = None) -> str:
    """Like read_small_text, from standard input (`--key-file -`): at most `limit` bytes."""
    source = stream or sys.stdin
    buffer = getattr(source, "buffer", None)
    if buffer is not None:
        return _text(buffer.read(limit + 1), limit, f"{what} on standard input", hint)
    text = source.read(limit + 1)  # a text stream without bytes underneath (tests' StringIO)
    return _text(text.encode("utf-8", "surrogateescape"), limit, f"{what} on standard input", hint)


def _text(data: bytes, limit: int, described: str, hint: str) -> str:
    described = described[:1].upper() + described[1:]
    if len(data) > limit:
        raise PairError(f"{described} is too large (over {limit // 1024} KiB).", hint)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PairError(f"{described} is not UTF-8 text.", hint) from exc


STDOUT = "-"  # as an output path: standard output, as gh and curl read it


def is_stdout(path: Path | None) -> bool:
    """Whether an output path a person named (`--output`, `--key-file`) means standard output: "-",
    for every command (check_new_file and write_new_file decide it here)."""
    return path is not None and str(path) == STDOUT


def check_new_file(path: Path, *, replace: bool, what: str, hint: str) -> None:
    """Raise PairError unless `write_new_file(path, …)` can succeed. The one rule for a secret
    written to a path a person names (`--output`, `--key-file`), asked BEFORE anything else
    changes (the broker, the database), so a refusal leaves nothing half-done.

    Refused: a directory; a device, FIFO or socket (writing there would replace the node, or
    hang); a symbolic link (the write is an atomic rename, which would replace the link itself,
    so pair never writes through one: name the file the link points at); an existing file
    unless `replace`; a file the rename cannot replace (immutable or append-only, or another
    user's in a sticky directory like /tmp); a missing or unwritable directory. The path "-"
    means standard output (is_stdout) and is always accepted. It cannot promise the disk keeps
    room for the write itself: write_new_file reports that in one sentence too."""
    if is_stdout(path):
        return
    parent = path.parent
    try:
        st = path.lstat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise PairError(f"Cannot use {path} for {what}: {exc.strerror}.", hint) from exc
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise PairError(
                f"{path} is a symbolic link; {what} is written only to a regular file, never through a link.", hint
            )
        if stat.S_ISDIR(st.st_mode):
            raise PairError(f"{path} is a directory; {what} needs a file name.", hint)
        if not stat.S_ISREG(st.st_mode):
            raise PairError(f"{path} exists and is not a regular file (a device, pipe or socket).", hint)
        if not replace:
            raise PairError(f"{path} already exists, and {what} is not written over an existing file.", hint)
        if _pinned(path):
            raise PairError(f"{path} is immutable or append-only (chattr), so it cannot be replaced.", hint)
    try:
        parent_st = parent.stat()
    except OSError:
        parent_st = None
    if parent_st is None or not stat.S_ISDIR(parent_st.st_mode):
        raise PairError(f"The directory {parent} does not exist.", hint)
    euid = os.geteuid()
    if st is not None and parent_st.st_mode & stat.S_ISVTX and euid not in (0, st.st_uid, parent_st.st_uid):
        raise PairError(f"{path} is another user's file in the sticky directory {parent}; it cannot be replaced.", hint)
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as exc:
        raise PairError(f"Cannot write to the directory {parent}: {exc.strerror}.", hint) from exc
    os.close(fd)
    os.unlink(probe)


def write_new_file(path: Path, data: bytes | str, *, what: str, hint: str) -> None:
    """Write `data` to a path check_new_file accepted: atomically and 0600 (write_private), or
    to standard output when the path is "-" (is_stdout). A failure of the write itself (the
    disk filled up, the file turned immutable since the check) is one PairError naming `what`,
    and leaves no temp file behind."""
    if is_stdout(path):
        sys.stdout.write(data if isinstance(data, str) else data.decode())
        sys.stdout.flush()
        return
    try:
        write_private(path, data)
    except OSError as exc:
        raise PairError(f"Cannot write {what} to {path}: {exc.strerror}.", hint) from exc


_FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h: _IOR('f', 1, long)
_PINNED_FLAGS = 0x10 | 0x20  # FS_IMMUTABLE_FL | FS_APPEND_FL


def _pinned(path: Path) -> bool:
    """Whether Linux's immutable or append-only attribute keeps `path` from being replaced."""
    if not sys.platform.startswith("linux"):
        return False
    import array
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
    except OSError:
        return False  # unreadable: the rename may still work; the write reports it if not
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
    except OSError:
        return False  # a filesystem without these attributes (tmpfs)
    finally:
        os.close(fd)
    return bool(flags[0] & _PINNED_FLAGS)


def write_private(path: Path, data: bytes | str, mode: int = 0o600) -> None:
    """Replace `path` with `data`, atomically and `mode` from the first byte; on any failure
    (OSError included) the staged temp file is removed and `path` is as it was."""
    staged = stage_private(path, data, mode)
    try:
        os.replace(staged, path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def stage_private(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Write `data` to a new 0600 file beside `path` (fsynced) and return its name: renaming it
    to `path` (os.replace) then publishes it atomically, and unlinking it forgets it."""
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)
