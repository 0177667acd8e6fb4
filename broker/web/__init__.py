"""The broker's web page: sign in (auth key, or a one-time link from `pair web`), the Spaces you
own or share with their ways in and who is in them, create one (its token handed out once),
delete one (trash icon, confirm), and share or unshare it. docs/web.md describes it and its
defences; `routes()` is what `broker.app` mounts."""

from __future__ import annotations

from broker.web.routes import routes

__all__ = ["routes"]
