"""Creating a Space from the page: the form, `broker.spaces.authorize` (the CLI's rules and audit
rows, with the signed-in person), and the token handed out once.

The token exists only in the answer to the POST (Cache-Control: no-store, like every page): it is
shown to copy, and offered as SPACE_ID.txt through a `data:` link built into that same answer, so
nothing keeps it on the broker and no second request can fetch it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from broker import names, spaces
from broker.context import Context
from broker.errors import Problem
from broker.store import UserRecord
from pair.api import models as m
from pair.durations import humanize

NAME_HELP = (
    f"{names.NAME_RULE[0].upper()}{names.NAME_RULE[1:]}. Leave it empty for a generated name like dynamic_stark."
)
# The page's own words where the CLI's hint names a flag.
HINTS = {"exists": "Pick another name, or leave it empty for a generated one."}
FIELDS = {"exists": "name", "invalid": "name", "unknown_user": "share_with"}


@dataclass
class Draft:
    """The form as the person filled it in, shown again with what went wrong."""

    name: str = ""
    share_with: list[str] = field(default_factory=list)
    error: str = ""
    error_field: str = ""  # "name" or "share_with": the field the error is tied to and focus goes to


@dataclass(frozen=True)
class Created:
    space_id: str
    name: str
    token: str
    ttl_seconds: int

    @property
    def valid_for(self) -> str:
        """ "1 hour": the words `pair spaces authorize` uses for the same TTL."""
        return humanize(self.ttl_seconds)

    @property
    def download_url(self) -> str:
        """SPACE_ID.txt as `pair spaces authorize` writes it (the token and a newline), as a data: URL."""
        return "data:text/plain;charset=utf-8," + quote(self.token + "\n", safe="")


def draft(pairs: list[tuple[str, str]]) -> Draft:
    """Read the form's `name` and its `share_with` checkboxes (one pair each)."""
    name = next((v.strip() for k, v in pairs if k == "name"), "")
    chosen = [v.strip() for k, v in pairs if k == "share_with" and v.strip()]
    return Draft(name=name, share_with=list(dict.fromkeys(chosen)))


def refused(form: Draft, problem: Problem) -> Draft:
    """The form again, with the refusal in words for this page."""
    detail = HINTS.get(problem.code, problem.detail)
    return Draft(form.name, form.share_with, f"{problem.message} {detail}".strip(), FIELDS.get(problem.code, "name"))


async def create(ctx: Context, user: UserRecord, form: Draft) -> Created:
    """Authorize a Space as `pair spaces authorize --name NAME --user EMAIL…` does (default TTL).
    Raises Problem as `broker.spaces.authorize` does."""
    request = m.AuthorizeRequest(name=form.name or None, share_with=form.share_with)
    issued = await spaces.authorize(ctx, user, request)
    return Created(issued.space.id, issued.space.name, issued.token, issued.ttl_seconds)
