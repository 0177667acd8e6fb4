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
from broker.errors import Problem, checked
from broker.store import TemplateRecord, UserRecord
from pair.api import models as m
from pair.durations import humanize

NAME_HELP = (
    f"{names.NAME_RULE[0].upper()}{names.NAME_RULE[1:]}. Leave it empty for a generated name like dynamic_stark."
)
# The page's own words where the CLI's hint names a flag.
HINTS = {
    "exists": "Pick another name, or leave it empty for a generated one.",
    "unknown_template": "Pick one of the templates listed.",
}
FIELDS = {
    "exists": "name",
    "invalid": "name",
    "unknown_user": "share_with",
    "unknown_template": "template",
    "quota_exceeded": "template",
}


@dataclass
class Draft:
    """The form as the person filled it in, shown again with what went wrong."""

    name: str = ""
    share_with: list[str] = field(default_factory=list)
    template: str = ""  # "": the broker's default template
    error: str = ""
    error_field: str = ""  # "name", "share_with" or "template": the field the error is tied to and focus goes to


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
    """Read the form's `name`, its `share_with` checkboxes (one pair each) and its `template`
    choice (checked by the broker as `--template` is, in `create`)."""
    name = next((v.strip() for k, v in pairs if k == "name"), "")
    chosen = [v.strip() for k, v in pairs if k == "share_with" and v.strip()]
    template = next((v.strip() for k, v in pairs if k == "template"), "")
    return Draft(name=name, share_with=list(dict.fromkeys(chosen)), template=template)


def refused(form: Draft, problem: Problem) -> Draft:
    """The form again, with the refusal in words for this page."""
    detail = HINTS.get(problem.code, problem.detail)
    return Draft(
        form.name,
        form.share_with,
        form.template,
        f"{problem.message} {detail}".strip(),
        FIELDS.get(problem.code, "name"),
    )


@dataclass(frozen=True)
class Choice:
    """One template in the form's picker: its name and what a Space of it costs."""

    name: str
    label: str  # "small: 2 compute units, 1 storage unit (the default) — 2 CPUs"
    is_default: bool


def _units(n: int, what: str) -> str:
    return f"{n} {what} unit{'' if n == 1 else 's'}"


def choices(templates: list[TemplateRecord]) -> list[Choice]:
    """The picker's options: every template of the broker (any signed-in person may name any,
    as `pair spaces authorize --template` may), the default marked."""
    found = []
    for t in templates:
        label = f"{t.name}: {_units(t.compute_units, 'compute')}, {_units(t.storage_units, 'storage')}"
        label += " (the default)" if t.is_default else ""
        label += f" — {t.description}" if t.description else ""
        found.append(Choice(t.name, label, t.is_default))
    return found


async def create(ctx: Context, user: UserRecord, form: Draft) -> Created:
    """Authorize a Space as `pair spaces authorize --name NAME --user EMAIL… [--template T]`
    does (default TTL; the same template rule, `broker.templates.resolve`). Raises Problem as
    `broker.spaces.authorize` does."""
    request = m.AuthorizeRequest(name=form.name or None, share_with=form.share_with, template=form.template or None)
    checked(m.AuthorizeRequest, request)  # as the JSON endpoint decodes it: the same sentences
    issued = await spaces.authorize(ctx, user, request)
    return Created(issued.space.id, issued.space.name, issued.token, issued.ttl_seconds)
