"""The `$PAIR_HOME/pair` launcher install.sh writes (through pair.container.install), and sshd runs
as AuthorizedKeysCommand.

It starts the virtualenv's Python with `-I -S` (no site, no environment: ~15 ms instead of ~21),
answers `verify` from the standard library alone, and only for other commands turns site-packages
on and loads the CLI. It pins PAIR_HOME to its own directory, because sshd runs it with an empty
environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TEMPLATE = """#!{python} -IS
# pair launcher, written by install.sh. `verify` runs from the standard library alone.
import os
import sys

os.environ["PAIR_HOME"] = {home!r}
if sys.argv[1:2] == ["verify"]:
    sys.path.insert(0, {site!r})
    from pair.verify import main

    sys.exit(main(sys.argv[2:]))
import site

site.main()
from pair.__main__ import main

sys.argv[0] = "pair"
main()
"""


def render(python: str, home: str, site_dir: str) -> str:
    return TEMPLATE.format(python=python, home=home, site=site_dir)


def text(home: Path) -> str:
    """The launcher for this interpreter and this installed `pair`, with PAIR_HOME `home`."""
    import pair

    site_dir = str(Path(pair.__file__).resolve().parent.parent)
    return render(sys.executable, str(home), site_dir)


def write(path: Path, home: Path | None = None) -> None:
    """Write the launcher (0755, atomically)."""
    content = text(home or path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content)
    os.chmod(tmp, 0o755)  # noqa: S103 - an executable everyone may run (sshd needs root-owned 0755)
    os.replace(tmp, path)
