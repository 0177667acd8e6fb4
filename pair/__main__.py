"""Entry point. Dispatches before importing the CLI framework, so that the commands sshd and ssh
run per connection (`pair verify`, and later the SSH proxy) start as fast as Python can."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:3] == ["spaces", "proxy"]:
        from pair.proxy import main as proxy

        sys.exit(proxy(sys.argv[3:]))
    from pair.cli.app import run

    run()


if __name__ == "__main__":
    main()
