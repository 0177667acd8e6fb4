"""Space templates (seed 001): what a Space costs, in compute units while it runs and storage
units while it exists. Admins define them; one may be the default, which a new Space gets when
its creator names none (`resolve`, which Space keys use too).

A broker without templates makes Spaces without one, costing nothing (quotas then limit only
their number); once it has templates, every new Space names one or gets the default.
"""

from __future__ import annotations

from broker.context import Context
from broker.errors import Problem, checked, invalid, not_found
from broker.store import Conflict, TemplateRecord
from pair.api import models as m

MAX_UNITS = 1_000_000


def to_wire(template: TemplateRecord) -> m.Template:
    return m.Template(
        name=template.name,
        description=template.description,
        compute_units=template.compute_units,
        storage_units=template.storage_units,
        is_default=template.is_default,
    )


def listing(templates: list[TemplateRecord]) -> str:
    """`a (default), b`: the templates a hint names."""
    return ", ".join(f"{t.name} (default)" if t.is_default else t.name for t in templates)


async def resolve(ctx: Context, name: str | None) -> TemplateRecord | None:
    """The template a new Space gets: `name`, else the default; None when the broker has no
    templates at all. Problem 404 (`unknown_template`) for a name it does not have, 409 (the
    same code) when it has templates but no default and none was named."""
    if name is not None:
        found = await ctx.store.template(name)
        if found is None:
            available = await ctx.store.templates()
            raise Problem(
                404,
                f"There is no template named {name!r} on this broker.",
                f"Its templates: {listing(available)}." if available else "It has none; leave out --template.",
                "unknown_template",
            )
        return found
    default = await ctx.store.default_template()
    if default is not None:
        return default
    available = await ctx.store.templates()
    if available:
        raise Problem(
            409,
            "This broker has no default template, so a new Space must name one.",
            f"Pass --template NAME; its templates: {listing(available)}.",
            "unknown_template",
        )
    return None


def _unknown(name: str) -> Problem:
    return not_found(
        f"The template {name!r}", "Check its spelling.", admin_detail="List them with `pair-broker templates list`."
    )


def _units(value: int, what: str) -> int:
    if not 0 <= value <= MAX_UNITS:
        raise invalid(f"{what} must be a whole number from 0 to {MAX_UNITS}.", f"Pass {what.split()[0]} N.")
    return value


async def add(
    ctx: Context, name: str, *, compute: int, storage: int, default: bool, description: str = "", actor: str
) -> TemplateRecord:
    """A new template; Problem 422 for a bad name, units or description, 409 (`exists`) for a
    name taken. `default` makes it the default (the previous default stays, as an ordinary one)."""
    checked(m.TemplateName, name)
    checked(m.TemplateDescription, description)
    template = TemplateRecord(
        name, description, _units(compute, "--compute"), _units(storage, "--storage"), default, ctx.now()
    )
    try:
        await ctx.store.add_template(template)
    except Conflict as exc:
        raise Problem(409, f"There is a template named {name!r} already.", "Pick another name.", "exists") from exc
    await ctx.store.audit(
        ctx.now(), actor, "template.add", name, f"compute {compute}, storage {storage}{', default' if default else ''}"
    )
    return template


async def remove(ctx: Context, name: str, *, actor: str) -> None:
    """Problem 404 when there is no such template; Spaces made from it keep its name and units."""
    if not await ctx.store.remove_template(name):
        raise _unknown(name)
    await ctx.store.audit(ctx.now(), actor, "template.remove", name)


async def set_default(ctx: Context, name: str, *, actor: str) -> None:
    if not await ctx.store.set_default_template(name):
        raise _unknown(name)
    await ctx.store.audit(ctx.now(), actor, "template.default", name)
