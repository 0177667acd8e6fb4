"""The Python half of install.sh: everything after pair's virtualenv exists.

install.sh does in shell only what must happen before Python does: its options, the root check,
the distribution's packages, PREFIX, the virtualenv and pip (with the choice of where pair comes
from). It then runs `PREFIX/venv/bin/python -I -m pair.container.install install …` with the Space
token on standard input. This package builds a plan from the options and what it finds on the
system (`plan.install_plan`: directories, files with their modes and contents, links, commands;
`plan.uninstall_plan` for --uninstall) and carries it out (`steps.carry_out`), or, with --dry-run,
prints every step as "would …" and changes nothing, exactly as the shell steps before it did.

- `layout`: where everything goes (docs/install.md), re-rooted in a temporary directory by tests.
- `steps`: the kinds of step (`Change`s and what only speaks) and the one loop that performs them.
- `plan`: the install and uninstall plans, pure functions of options, layout and `Host` facts.
- `login`: the login user's password field, which sshd (UsePAM no) reads as "locked" if it starts with `!`.
- `__main__`: the command line install.sh calls; its output is install.sh's (`pair: …`).
"""
