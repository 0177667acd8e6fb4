"""The web page's routes: sign in and out, the Spaces page and its JSON poll, create, delete and
share (the create flow's rules are in `create`, what a card shows in `views`).

Every state change goes through the same functions as the CLI (`broker.accounts`,
`broker.spaces`), after the session's CSRF token is checked. Forms work without JavaScript
(POST, then a redirect with a signed flash message); `static/app.js` sends the same forms with
fetch (`Accept: application/json`, the token in `X-CSRF-Token`) and updates the page in place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from broker import access, accounts, http, ports, quotas, spaces, streams
from broker.apps import auth as app_auth
from broker.context import Context
from broker.emails import normalize_email
from broker.errors import Problem, checked
from broker.store import StoreUnavailable, UserRecord
from broker.web import admin, auth, create, security, text, views
from broker.web.auth import WebSession
from pair.api import endpoints as ep
from pair.api import models as m
from pair.api import terminal as tp

STATIC = Path(__file__).resolve().parent / "static"
POLL_MS = 3000  # how often the page asks for fresh states
# When terminal.js joins its terminal again after a drop: the CLI's rule (pair.api.terminal).
RECONNECT_RULE = json.dumps(tp.reconnect_rule(), separators=(",", ":"))


def _asset_version() -> str:
    """Changes with the static files, so browsers never pair a new page with an old script."""
    digest = hashlib.sha256()
    for path in sorted(p for p in STATIC.rglob("*") if p.is_file()):  # vendor/ holds xterm.js
        digest.update(path.relative_to(STATIC).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


ASSET_VERSION = _asset_version()
TEMPLATES = Environment(
    loader=PackageLoader("broker.web", "templates"),
    autoescape=True,  # every value is HTML-escaped unless it is Markup we built
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["prose"] = text.prose
TEMPLATES.filters["plain"] = text.plain
TEMPLATES.filters["who"] = views.who

Handler = Callable[[Request], Awaitable[Response]]


def _ctx(request: Request) -> Context:
    ctx: Context = request.app.ctx
    return ctx


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("user", None)
    values.setdefault("csrf", "")
    html = TEMPLATES.get_template(template).render(asset=ASSET_VERSION, **values)
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)


def problem_page(request: Request, problem: Problem, as_json: bool, *, admin: bool = False) -> Response:
    if as_json:
        return http.json_response(problem.status, http.problem_body(problem, admin=admin))
    return render(request, "message.html", problem.status, title=problem.message, detail=problem.detail_for(admin))


async def _asked_by_admin(request: Request, problem: Problem) -> bool:
    """Whether the person the page answers is an admin, looked up only for a Problem with a hint
    for admins (Problem.detail_for)."""
    if not problem.admin_detail:
        return False
    try:
        web = await auth.current(request)
    except (Problem, StoreUnavailable):
        return False
    return web is not None and web.user.is_admin


def page(handler: Handler, *, json: bool = False) -> Handler:
    """A web route: Problems become an HTML page (or JSON for scripts), every answer is hardened."""

    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except (Problem, StoreUnavailable) as exc:
            problem = http.as_problem(exc)
            admin = await _asked_by_admin(request, problem)
            response = problem_page(request, problem, json or wants_json(request), admin=admin)
        return security.harden(request, response)

    return endpoint


def unauthenticated() -> Problem:
    return Problem(401, "You are not signed in, or your session has expired.", "Sign in again.", "unauthenticated")


async def _signed_in(request: Request) -> WebSession:
    web = await auth.current(request)
    if web is None:
        raise unauthenticated()
    return web


async def _teammates(ctx: Context, user: UserRecord) -> list[str]:
    """Whom `user` may share with: people (emails), then groups (`group:NAME`, views.GROUP)."""
    people = [u.email for u in await access.teammates(ctx, user)]
    return people + [views.GROUP + g.name for g in await ctx.store.groups()]


async def _rows(ctx: Context, user: UserRecord) -> list[views.Row]:
    visible = await spaces.visible(ctx, user)
    here = {s.id: await streams.who_is_connected(ctx, s) for s in visible}
    shared_ports = {s.id: await ports.listing(ctx, user, s.id) for s in visible}
    terminals = {s.id: (await ctx.agent_report(s.id)).terminals for s in visible}
    return views.rows(visible, await _teammates(ctx, user), here, ctx.now(), shared_ports, terminals)


async def _row(ctx: Context, user: UserRecord, space_id: str) -> views.Row:
    """One card, computed among all the Spaces `user` sees (its commands depend on them); 404 if
    `user` cannot see it."""
    await access.get_visible(ctx, user, space_id)
    return next(r for r in await _rows(ctx, user) if r.id == space_id)


def row_html(row: views.Row, csrf: str) -> Markup:
    html: Markup = TEMPLATES.get_template("_space.html").module.space_card(row, csrf)  # type: ignore[attr-defined]
    return html


def _start(request: Request, response: Response, token: str) -> None:
    ttl = _ctx(request).settings.web_session_ttl
    security.set_cookie(request, response, security.SESSION_COOKIE, token, max_age=ttl)


async def _end_old_session(request: Request) -> None:
    old = await auth.current(request)
    if old is not None:
        await accounts.logout(_ctx(request), old.session, old.user)


def _done(request: Request, web: WebSession, message: str, **extra: Any) -> Response:
    """The answer to a successful change: JSON for the script, else back to the page with a flash."""
    if wants_json(request):
        return JSONResponse({"message": message, **extra})
    response = redirect("/")
    flash = security.encode_flash(web.token, "ok", message)
    security.set_cookie(request, response, security.FLASH_COOKIE, flash, max_age=60)
    return response


# -- sign in and out ------------------------------------------------------------------------

NOTICES = {
    "signed_out": "You have signed out.",
    "expired": "Your session ended. Sign in again.",
}


def _next_path(value: str) -> str:
    """Where to go after signing in: only the broker's sign-in for a shared app (a path on this
    origin), never anywhere else."""
    return value if value.startswith(ports.SIGNIN_PATH + "?") and app_auth.safe_next(value) == value else ""


def _signin_page(
    request: Request, status: int = 200, *, email: str = "", error: str = "", notice: str = "", next_path: str = ""
) -> Response:
    nonce = security.new_nonce()
    response = render(
        request, "signin.html", status, email=email, error=error, notice=notice, csrf=nonce, next_path=next_path
    )
    if next_path:  # the form's redirects end on the app's origin: let them (CSP form-action)
        request.state.form_target = ports.apps_source(_ctx(request))
    security.set_cookie(request, response, security.SIGNIN_COOKIE, nonce, max_age=3600)
    return response


async def signin_form(request: Request) -> Response:
    next_path = _next_path(request.query_params.get("next", ""))
    if await auth.current(request) is not None:
        return redirect(next_path or "/")
    notice = next((text for key, text in NOTICES.items() if key in request.query_params), "")
    return _signin_page(request, notice=notice, next_path=next_path)


async def signin(request: Request) -> Response:
    security.check_origin(request)
    form = await security.read_form(request)
    email, auth_key = form.get("email", "").strip(), form.get("auth_key", "").strip()
    next_path = _next_path(form.get("next", ""))
    if not security.same_token(
        form.get(security.CSRF_FIELD, ""), security.read_cookie(request, security.SIGNIN_COOKIE)
    ):
        error = "This sign-in form had expired. Please sign in again."
        return _signin_page(request, 403, email=email, error=error, next_path=next_path)
    if not email or not auth_key:
        return _signin_page(request, 422, email=email, error="Enter your email and your auth key.", next_path=next_path)
    try:
        token, _, _ = await accounts.login(
            _ctx(request), email, auth_key, kind=auth.KIND, client=auth.client_label(request)
        )
    except Problem as exc:
        error = f"{exc.message} {exc.detail}".strip()
        return _signin_page(request, exc.status, email=email, error=error, next_path=next_path)
    await _end_old_session(request)
    response = redirect(next_path or "/")
    _start(request, response, token)
    security.clear_cookie(request, response, security.SIGNIN_COOKIE)
    return response


async def signout(request: Request) -> Response:
    web = await auth.current(request)
    if web is None:
        return redirect("/signin")
    security.check_csrf(request, await security.read_form(request), web.csrf)
    await accounts.logout(_ctx(request), web.session, web.user)
    response = redirect("/signin?signed_out")
    security.clear_cookie(request, response, security.SESSION_COOKIE)
    return response


OWN_NAVIGATIONS = frozenset({"none", "same-origin"})  # Fetch Metadata: typed, pasted, opened by `pair web`


async def link(request: Request) -> Response:
    """GET /web/link/TOKEN, from `pair web`: spend the link, start a web session, show the Spaces.

    Only a navigation the browser marks `Sec-Fetch-Site: none` (address bar, `pair web --open`)
    or `same-origin` (or a client without Fetch Metadata) spends it at once. One another site or
    an app origin sent (`cross-site`, `same-site`) gets a page whose button POSTs it back
    (`link_confirm`): otherwise a page could sign its visitor in as whoever made the link (login
    CSRF). That page leaves the link unspent."""
    if request.method == "HEAD":  # a link checker's HEAD must not spend the link
        return Response(status_code=204)
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in OWN_NAVIGATIONS:
        return render(request, "link.html", action=auth.LINK_PATH + request.path_params["token"])
    return await _redeem_link(request)


async def link_confirm(request: Request) -> Response:
    """POST /web/link/TOKEN: the button of `link`'s page; a same-origin form only."""
    security.check_origin(request)
    return await _redeem_link(request)


async def _redeem_link(request: Request) -> Response:
    ctx = _ctx(request)
    token, _, _ = await auth.redeem_link(ctx, request.path_params["token"], auth.client_label(request))
    await _end_old_session(request)
    response = redirect("/")
    _start(request, response, token)
    return response


# -- the Spaces page ------------------------------------------------------------------------


async def index(request: Request) -> Response:
    web = await auth.current(request)
    if web is None:
        return redirect("/signin")
    rows = await _rows(_ctx(request), web.user)
    raw_flash = security.read_cookie(request, security.FLASH_COOKIE)
    response = render(
        request,
        "spaces.html",
        user=web.user,
        csrf=web.csrf,
        rows=rows,
        heading=views.heading(len(rows)),
        flash=security.decode_flash(web.token, raw_flash) if raw_flash else None,
        poll_ms=POLL_MS,
        quota=await quotas.report(_ctx(request), web.user),
    )
    if raw_flash:
        security.clear_cookie(request, response, security.FLASH_COOKIE)
    return response


async def spaces_json(request: Request) -> Response:
    """GET /web/spaces.json: the page's poll (read-only, cookie-authenticated)."""
    web = await _signed_in(request)
    rows = await _rows(_ctx(request), web.user)
    return JSONResponse({"heading": views.heading(len(rows)), "spaces": [r.json() for r in rows]})


async def space_row(request: Request) -> Response:
    """GET /web/spaces/ID/row: one rendered card, for a Space the poll found new or changed."""
    web = await _signed_in(request)
    return HTMLResponse(row_html(await _row(_ctx(request), web.user, request.path_params["space_id"]), web.csrf))


async def confirm_delete(request: Request) -> Response:
    """GET /spaces/ID/delete: the confirmation, for browsers without JavaScript."""
    web = await auth.current(request)
    if web is None:
        return redirect("/signin")
    space = await access.get_owned(_ctx(request), web.user, request.path_params["space_id"], "delete")
    return render(request, "confirm_delete.html", user=web.user, csrf=web.csrf, space=space)


async def share_form(request: Request) -> Response:
    """GET /spaces/ID/share: choose whom to share with, for browsers without JavaScript (the
    script shows the same choice in a dialog)."""
    web = await auth.current(request)
    if web is None:
        return redirect("/signin")
    ctx = _ctx(request)
    space = await access.get_owned(ctx, web.user, request.path_params["space_id"], "share")
    row = await _row(ctx, web.user, space.id)
    return render(request, "confirm_share.html", user=web.user, csrf=web.csrf, row=row)


async def delete(request: Request) -> Response:
    web = await _signed_in(request)
    security.check_csrf(request, await security.read_form(request), web.csrf)
    space = await spaces.delete(_ctx(request), web.user, request.path_params["space_id"])
    return _done(request, web, f'Deleted the Space "{space.name}".', id=space.id)


async def share(request: Request) -> Response:
    web = await _signed_in(request)
    form = await security.read_form(request)
    security.check_csrf(request, form, web.csrf)
    add, remove = form.get("add", "").strip(), form.get("remove", "").strip()
    if not add and not remove:
        raise Problem(422, "Choose a teammate first.", code="invalid")
    ctx = _ctx(request)

    def split(value: str) -> tuple[list[str], list[str]]:  # (emails, group names)
        if not value:
            return [], []
        return ([], [value.removeprefix(views.GROUP)]) if value.startswith(views.GROUP) else ([value], [])

    (add_people, add_groups), (remove_people, remove_groups) = split(add), split(remove)
    update = checked(
        m.ShareUpdate,
        m.ShareUpdate(add=add_people, remove=remove_people, add_groups=add_groups, remove_groups=remove_groups),
    )
    space = await spaces.update_shares(ctx, web.user, request.path_params["space_id"], update)
    shown = views.who(add if add.startswith(views.GROUP) else normalize_email(add)) if add else ""
    if add:
        message = f'"{space.name}" is now shared with {shown}.'
    else:
        gone = views.who(remove if remove.startswith(views.GROUP) else normalize_email(remove))
        message = f'"{space.name}" is no longer shared with {gone}.'
    return _done(request, web, message, row_html=str(row_html(await _row(ctx, web.user, space.id), web.csrf)))


# -- shared ports ---------------------------------------------------------------------------


async def app_signin(request: Request) -> Response:
    """GET /apps/signin?host&state&next: step 2 of broker.apps.auth, on the broker's origin. A
    person signed in here who may open the app at `host` goes back to it with a one-minute,
    single-use ticket for that origin only; anyone else signs in first."""
    web = await auth.current(request)
    if web is None:
        return redirect("/signin?" + urlencode({"next": f"{request.url.path}?{request.url.query}"}))
    ctx = _ctx(request)
    query = request.query_params
    domain = ports.apps_domain(ctx)
    address = domain.parse_host(query.get("host", "")) if domain else None
    found = await ports.find(ctx, address) if address else None
    if domain is None or address is None or found is None:
        raise Problem(404, "No port is shared at that address.", "It may have been unshared.", "not_found")
    record, space = found
    if not await access.may_open_port(ctx, web.user, space, record.level):
        raise Problem(
            403,
            f'You cannot open port {record.port} of "{space.name}".',
            f"It is open to {ports.LEVEL_WORDS[record.level]}; ask {space.owner_email} for access.",
            "forbidden",
        )
    state = query.get("state", "")
    if not state or len(state) > 100:
        raise Problem(400, "This sign-in request is incomplete.", "Open the app's address again.", "invalid")
    ticket = ports.credentials(ctx).ticket(
        user_id=web.user.id,
        host=domain.host(address),
        state_digest=state,
        next_path=query.get("next", "/"),
        now=ctx.now(),
        session_id=web.session.id,
    )
    return redirect(app_auth.return_url(ports.app_origin(ctx, domain, record.address), ticket))


async def port_share(request: Request) -> Response:
    """POST /spaces/ID/ports: share a port, or change its level or label (the owner)."""
    web = await _signed_in(request)
    form = await security.read_form(request)
    security.check_csrf(request, form, web.csrf)
    level = form.get("level") or None
    if level is not None and level not in m.PORT_LEVELS:
        raise Problem(422, f"{level[:20]!r} is not an access level.", "Choose one from the list.", "invalid")
    label = form.get("label")
    body = checked(m.PortShare, m.PortShare(level=level, label=label))
    ctx = _ctx(request)
    shared = await ports.share(ctx, web.user, request.path_params["space_id"], form.get("port", ""), body)
    message = f"Port {shared.port} is shared at {shared.url} with {ports.LEVEL_WORDS[shared.level]}."
    return _done(request, web, message)


async def port_unshare(request: Request) -> Response:
    """POST /spaces/ID/ports/PORT/remove: stop sharing a port (the owner)."""
    web = await _signed_in(request)
    security.check_csrf(request, await security.read_form(request), web.csrf)
    port = request.path_params["port"]
    await ports.unshare(_ctx(request), web.user, request.path_params["space_id"], port)
    return _done(request, web, f"Port {port} is no longer shared.")


# -- the terminal page ---------------------------------------------------------------------


async def terminal_page(request: Request) -> Response:
    """GET /spaces/ID/terminal[?join=TERMINAL_ID[&read_only=1]]: a full-window terminal in a
    Space the person owns or shares (404 otherwise), once it takes terminals (else why not).
    Its policy admits xterm.js's `<style>` elements by this response's nonce (security.csp)."""
    web = await auth.current(request)
    if web is None:
        return redirect("/signin")
    ctx = _ctx(request)
    nonce = ""
    try:
        space = await access.get_visible(ctx, web.user, request.path_params["space_id"])
        refused = streams.refusal(spaces.to_wire(space, web.user, None), "terminal")
        if refused is not None:
            raise Problem(409, *refused)
        join = request.query_params.get("join", "")
        if join:
            try:
                msgspec.convert(join, tp.TerminalId)
            except msgspec.ValidationError:
                raise Problem(
                    404, "There is no such terminal.", "Open a new one from the Spaces page.", "not_found"
                ) from None
        nonce = security.new_nonce()
        response: Response = render(
            request,
            "terminal.html",
            space_name=space.name,
            ws_url=ep.WEB_TERMINAL.format(space_id=space.id),
            terminal_id=join,
            read_only=request.query_params.get("read_only", "") in ("1", "true"),
            reconnect=RECONNECT_RULE,
            style_nonce=nonce,
        )
    except (Problem, StoreUnavailable) as exc:
        response = problem_page(request, http.as_problem(exc), False)
    return security.harden(request, response, style_nonce=nonce)


# -- create a Space -------------------------------------------------------------------------


async def _create_values(ctx: Context, web: WebSession, *, form: bool = True, **values: Any) -> dict[str, Any]:
    """What the create section shows; the form's choices (teammates, templates) only with `form`."""
    values.setdefault("draft", create.Draft())
    values.setdefault("created", None)
    teammates = await _teammates(ctx, web.user) if form else []
    choices = create.choices(await ctx.store.templates()) if form else []
    return {
        "user": web.user,
        "csrf": web.csrf,
        "teammates": teammates,
        "templates": choices,
        "name_help": create.NAME_HELP,
        **values,
    }


async def create_form(request: Request) -> Response:
    """GET /spaces/new: name a Space, choose teammates and a template."""
    web = await auth.current(request)
    if web is None:
        return redirect("/signin")
    return render(request, "new.html", **await _create_values(_ctx(request), web))


async def create_space(request: Request) -> Response:
    """POST /spaces/new: authorize as `pair spaces authorize` does and show the token, once. The
    script asks for JSON and gets the same section as HTML (`html`) to put in place of the form."""
    web = await _signed_in(request)
    pairs = await security.read_form_pairs(request)
    security.check_csrf(request, dict(pairs), web.csrf)
    ctx = _ctx(request)
    form = create.draft(pairs)
    status = 200
    try:
        values = await _create_values(ctx, web, form=False, created=await create.create(ctx, web.user, form))
    except Problem as exc:
        status = exc.status
        values = await _create_values(ctx, web, draft=create.refused(form, exc))
    if wants_json(request):
        section = TEMPLATES.get_template("_create.html").module.create_section(**values)  # type: ignore[attr-defined]
        return JSONResponse({"ok": status == 200, "html": str(section)}, status_code=status)
    return render(request, "new.html", status, **values)


# -- the admin page ----------------------------------------------------------------------------


async def admin_page(request: Request) -> Response:
    """GET /admin: for admins; 403 for anyone else signed in."""
    web = await auth.current(request)
    if web is None:
        return redirect("/signin")
    access.require_admin(web.user)
    raw_flash = security.read_cookie(request, security.FLASH_COOKIE)
    flash = security.decode_flash(web.token, raw_flash) if raw_flash else None
    sealed = security.read_cookie(request, security.ONCE_COOKIE)
    new_key = security.open_secret(web.token, sealed) if sealed else None
    values = await admin.values(_ctx(request), web, request, flash=flash, new_key=new_key)
    response = render(request, "admin.html", **values)
    for name, sent in ((security.FLASH_COOKIE, raw_flash), (security.ONCE_COOKIE, sealed)):
        if sent:  # each is shown once
            security.clear_cookie(request, response, name)
    return response


async def admin_change(request: Request) -> Response:
    """POST /admin/ACTION: one change (CSRF-checked, admins only); back to the page (303, so a
    reload never sends the change again) with a flash, and a new auth key sealed for that page
    to show once (`security.seal_secret`: never in the URL)."""
    web, form = await admin.guard(request)
    ctx = _ctx(request)
    try:
        message, key = await admin.change(ctx, web, request.path_params["action"], form)
    except Problem as exc:
        if exc.status in (401, 403):
            raise
        flash = {"kind": "error", "text": f"{exc.message} {exc.detail_for(True)}".strip()}
        return render(request, "admin.html", exc.status, **await admin.values(ctx, web, request, flash=flash))
    response = redirect("/admin")
    token = web.token
    if key is not None and await auth.current(request) is None:
        # The admin reset their own key, which ended every session of theirs, this one too. This
        # browser gets a new one (it just proved who it is, as a password change keeps you
        # signed in), so the key is shown as every other reset's is: sealed for the page the
        # redirect leads to, once; a reload is a GET that shows it no more.
        token, _ = await accounts.start_session(ctx, web.user, kind=auth.KIND, client=auth.client_label(request))
        _start(request, response, token)
        message = "You have a new auth key (shown below, once); your other sessions ended."
    security.set_cookie(request, response, security.FLASH_COOKIE, security.encode_flash(token, "ok", message), 60)
    if key is not None:
        sealed = security.seal_secret(token, key)
        security.set_cookie(request, response, security.ONCE_COOKIE, sealed, security.ONCE_MAX_AGE)
    return response


def routes() -> list[BaseRoute]:
    return [
        Route("/", page(index), methods=["GET"]),
        Route("/signin", page(signin_form), methods=["GET"]),
        Route("/signin", page(signin), methods=["POST"]),
        Route("/signout", page(signout), methods=["POST"]),
        Route(auth.LINK_PATH + "{token}", page(link), methods=["GET"]),
        Route(auth.LINK_PATH + "{token}", page(link_confirm), methods=["POST"]),
        Route("/web/spaces.json", page(spaces_json, json=True), methods=["GET"]),
        Route("/web/spaces/{space_id}/row", page(space_row), methods=["GET"]),
        Route("/spaces/{space_id}/delete", page(confirm_delete), methods=["GET"]),
        Route("/spaces/{space_id}/delete", page(delete), methods=["POST"]),
        Route("/spaces/{space_id}/share", page(share_form), methods=["GET"]),
        Route("/spaces/{space_id}/shares", page(share), methods=["POST"]),
        Route(ports.SIGNIN_PATH, page(app_signin), methods=["GET"]),
        Route("/spaces/{space_id}/ports", page(port_share), methods=["POST"]),
        Route("/spaces/{space_id}/ports/{port}/remove", page(port_unshare), methods=["POST"]),
        Route(ep.WEB_TERMINAL_PAGE, terminal_page, methods=["GET"]),
        Route("/spaces/new", page(create_form), methods=["GET"]),
        Route("/spaces/new", page(create_space), methods=["POST"]),
        Route("/admin", page(admin_page), methods=["GET"]),
        Route("/admin/{action}", page(admin_change), methods=["POST"]),
        Mount("/web/static", app=security.StaticHeaders(StaticFiles(directory=STATIC)), name="web-static"),
        http.bind(ep.WEB_LINK, auth.web_link_handler),
    ]
