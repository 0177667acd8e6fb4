"""`pair keys add|list|remove`: the SSH public keys that let you into Spaces."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pair import files, sshkeys
from pair.api.errors import PairError
from pair.cli import identities
from pair.cli.session import signed_in
from pair.printable import printable

if TYPE_CHECKING:
    from pair.api.models import SshKey

app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Your SSH public keys: they let you into the Spaces you can see."
)

DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")


def ssh_keygen_line(key: SshKey) -> str:
    """The line `ssh-keygen -l` prints for a key: `256 SHA256:… comment (ED25519)`."""
    kind = {
        "ssh-ed25519": "ED25519",
        "ssh-rsa": "RSA",
        "sk-ssh-ed25519@openssh.com": "ED25519-SK",
        "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
    }.get(key.key_type, "ECDSA")
    return printable(f"{key.bits} {key.fingerprint} {key.comment or 'no comment'} ({kind})")


def _default_key(generate: bool = False) -> Path:
    ssh_dir = Path.home() / ".ssh"
    for name in DEFAULT_KEYS:
        if (ssh_dir / name).is_file():
            return ssh_dir / name
    if generate:
        return _generate(ssh_dir / "id_ed25519")
    raise PairError(
        f"No public key found in {ssh_dir} ({', '.join(DEFAULT_KEYS)}).",
        "Create one with `pair keys add --generate` (or `ssh-keygen -t ed25519`), or pass the path of a .pub file.",
    )


def _generate(private: Path) -> Path:
    """Make an Ed25519 key pair with ssh-keygen at `private` (and `.pub`); ssh-keygen asks for a
    passphrase at a terminal, and without one (a script) the key has none."""
    import shutil
    import subprocess

    from pair.cli.output import is_interactive

    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise PairError("ssh-keygen is not installed, so pair cannot make an SSH key.", "Install OpenSSH's client.")
    private.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [keygen, "-q", "-t", "ed25519", "-f", str(private), "-C", f"pair {private.name}"]
    if not is_interactive():
        argv[2:2] = ["-N", ""]
    done = subprocess.run(argv, stdin=None if is_interactive() else subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise PairError(f"ssh-keygen could not make {private} (exit status {done.returncode}).")
    print(f"Made a new SSH key {private} (ssh-keygen -t ed25519).")
    return private.with_name(private.name + ".pub")


@app.command("add")
def add(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A .pub file. [default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub]", show_default=False
        ),
    ] = None,
    generate: Annotated[
        bool,
        typer.Option("--generate", help="With no key in ~/.ssh yet, make one (ssh-keygen -t ed25519) and add it."),
    ] = False,
) -> None:
    """Register an SSH public key."""
    if path is not None and generate:
        raise PairError("--generate makes ~/.ssh/id_ed25519; a PATH names a key you have.", "Pass one of them.")
    path = path or _default_key(generate)
    text = files.read_small_text(
        path, what="the public key file", hint="Pass the path of your public key, e.g. ~/.ssh/id_ed25519.pub."
    )
    try:
        sshkeys.parse_public_key(text)  # refuse locally first: a private key never leaves this machine
    except sshkeys.InvalidKeyError as exc:
        raise PairError(f"{path}: {exc.message}", exc.hint) from exc
    client, _ = signed_in()
    with client:
        key = client.add_key(text.strip())
    identities.remember(path)  # so connect and ssh-config offer its private half
    print(f"Added {ssh_keygen_line(key)}")


@app.command("list")
def list_keys() -> None:
    """List your keys as `ssh-keygen -l` prints them."""
    client, _ = signed_in()
    with client:
        keys = client.ssh_keys()
    if not keys:
        print("No SSH keys yet. Add one with `pair keys add`.")
    for key in keys:
        print(ssh_keygen_line(key))


@app.command("remove")
def remove(fingerprint: Annotated[str, typer.Argument(help="SHA256:… as `pair keys list` shows it.")]) -> None:
    """Remove a key: it no longer opens any Space."""
    wanted = fingerprint.strip()
    wanted = wanted if wanted.startswith("SHA256:") else f"SHA256:{wanted}"
    client, _ = signed_in()
    with client:
        match = next((k for k in client.ssh_keys() if k.fingerprint == wanted), None)
        if match is None:
            raise PairError(f"You have no key with the fingerprint {wanted}.", "See yours with `pair keys list`.")
        client.remove_key(match.id)
    print(f"Removed {ssh_keygen_line(match)}")
