"""The admin page (/admin): users, groups and members, templates, quotas with usage, access
requests, and the audit log, for admins only (anyone else is answered 403), in the same web app
with the same measures as the Spaces page: the cookie session, a CSRF token on every change, the
page's Content-Security-Policy. Plain forms (POST, then a 303 back with a flash and any new key
sealed for that page to show once), no script.

Every change goes through the functions the CLI and the API use (`accounts`, `admin`, `groups`,
`templates`, `quotas`, `access_requests`), so a rule holds everywhere or nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from broker import access, access_requests, accounts, admin, credentials, groups, quotas, templates
from broker.context import Context, timestamp
from broker.errors import Problem, invalid
from broker.store import AuditRecord, UserRecord
from broker.web import auth, security
from broker.web.auth import WebSession
from pair.api import models as m

AUDIT_LIMIT = 100


@dataclass(frozen=True)
class UserRow:
    user: UserRecord
    quota: m.Quota
    own: dict[str, str]  # the user's own limits as the form shows them ("" unset)


def _limit(value: int | None) -> str:
    return "" if value is None else str(value)


async def _signed_in_admin(request: Request) -> WebSession:
    web = await auth.current(request)
    if web is None:
        raise Problem(401, "You are not signed in, or your session has expired.", "Sign in again.", "unauthenticated")
    access.require_admin(web.user)
    return web


async def values(
    ctx: Context, web: WebSession, request: Request, *, new_key: str | None = None, **extra: Any
) -> dict[str, Any]:
    """What the page shows, read afresh; with `new_key` (an auth key to show once), whose key it
    is, read from the key itself: the admin's own (a reset of their own key) is theirs to keep,
    anyone else's is to hand over."""
    key_owner = await ctx.store.user_by_auth_key(credentials.digest(new_key)) if new_key else None
    users = []
    for user in await ctx.store.users():
        own, _ = await ctx.store.quotas_of(user.id)
        own_form = {"spaces": _limit(own.spaces), "compute": _limit(own.compute), "storage": _limit(own.storage)}
        users.append(UserRow(user, await quotas.report(ctx, user), own_form))
    filters = {k: request.query_params.get(k, "").strip() for k in ("actor", "action", "target")}
    log: list[AuditRecord] = await ctx.store.audit_log(
        limit=AUDIT_LIMIT, actor=filters["actor"], action=filters["action"], target=filters["target"]
    )
    found = await ctx.store.access_requests()
    return {
        "user": web.user,
        "csrf": web.csrf,
        "users": users,
        "groups": await ctx.store.groups(),
        "templates": await ctx.store.templates(),
        "requests": [r for r in found if r.state == "pending" and r.expires_at > ctx.now()],
        "decided": [r for r in found if r.state != "pending"][-20:],
        "audit": list(reversed(log)),
        "filters": filters,
        "describe": quotas.describe,
        "when": lambda at: f"{timestamp(at):%Y-%m-%d %H:%M:%S}",
        "new_key": new_key,
        "key_owner": key_owner.email if key_owner is not None else "",
        "own_key": key_owner is not None and key_owner.id == web.user.id,
        **extra,
    }


def _number(form: dict[str, str], field: str, label: str) -> int | None:
    raw = form.get(field, "").strip()
    if raw == "" or raw == "unlimited":
        return None
    if not raw.isdigit():
        raise invalid(f"{label} must be a whole number, or empty for unlimited.", "Fix it and try again.")
    return int(raw)


async def change(ctx: Context, web: WebSession, action: str, form: dict[str, str]) -> tuple[str, str | None]:
    """Carry out one form's change as `web.user`; the flash sentence, and a new auth key to show
    once (user add, reset key). Problem for anything refused."""
    actor = web.user.email
    if action == "user-add":
        made, key = await accounts.create_user(
            ctx, form.get("email", ""), is_admin=form.get("admin") == "on", actor=actor
        )
        return f"Added {made.email}. Their auth key is shown below, once.", key
    if action == "user-remove":
        gone = await admin.remove_user(ctx, form.get("email", ""), actor=actor)
        return f"Removed {gone.email} and the Spaces they owned.", None
    if action == "user-reset":
        reset, key = await accounts.reset_key(ctx, form.get("email", ""), actor=actor)
        return f"Gave {reset.email} a new auth key (shown below, once); their sessions ended.", key
    if action == "group-add":
        group = await groups.add(ctx, form.get("name", "").strip(), actor=actor)
        return f"Created the group {group.name}.", None
    if action == "group-remove":
        await groups.remove(ctx, form.get("name", ""), actor=actor)
        return f"Removed the group {form.get('name', '')}.", None
    if action == "member-add":
        group = await groups.add_members(ctx, form.get("group", ""), [form.get("email", "")], actor=actor)
        return f"{group.name}: {', '.join(group.members)}.", None
    if action == "member-remove":
        group = await groups.remove_members(ctx, form.get("group", ""), [form.get("email", "")], actor=actor)
        return f"Took {form.get('email', '')} out of {group.name}.", None
    if action == "template-add":
        compute = _number(form, "compute", "Compute units")
        storage = _number(form, "storage", "Storage units")
        made_t = await templates.add(
            ctx,
            form.get("name", "").strip(),
            compute=compute or 0,
            storage=storage or 0,
            default=form.get("default") == "on",
            description=form.get("description", "").strip(),
            actor=actor,
        )
        return f"Added the template {made_t.name}.", None
    if action == "template-remove":
        await templates.remove(ctx, form.get("name", ""), actor=actor)
        return f"Removed the template {form.get('name', '')}.", None
    if action == "template-default":
        await templates.set_default(ctx, form.get("name", ""), actor=actor)
        return f"{form.get('name', '')} is the default template.", None
    if action in ("quota-user", "quota-group"):
        changes: quotas.Changes = {
            "spaces": _number(form, "spaces", "Spaces"),
            "compute": _number(form, "compute", "Compute units"),
            "storage": _number(form, "storage", "Storage units"),
        }
        subject = form.get("subject", "")
        if action == "quota-user":
            limits = await quotas.set_for_user(ctx, subject, changes, actor=actor)
        else:
            limits = await quotas.set_for_group(ctx, subject, changes, actor=actor)
        return f"{subject}: {quotas.describe(limits)}.", None
    if action == "request-approve":
        approved = await access_requests.approve(ctx, form.get("id", ""), actor=actor)
        return f"Approved {approved.email}: their account and Space {approved.space} are ready.", None
    if action == "request-deny":
        denied = await access_requests.deny(ctx, form.get("id", ""), actor=actor)
        return f"Denied the request of {denied.email}.", None
    raise Problem(404, "There is no such admin action.", "Reload the page.", "not_found")


async def guard(request: Request) -> tuple[WebSession, dict[str, str]]:
    """An admin's POST with this page's CSRF token; Problem 401/403 otherwise (a non-admin is
    refused before the token is even looked at)."""
    web = await _signed_in_admin(request)
    form = await security.read_form(request)
    security.check_csrf(request, form, web.csrf)
    return web, form
