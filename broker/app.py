"""The broker's ASGI app, composed in one place."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from broker import agents, bus, downloads, http, metrics, openapi, outbox, peering, relay, snapshots, streams, web
from broker.app_gate import AppsGate
from broker.bus import Unsubscribe
from broker.context import Context, open_context
from broker.errors import Problem
from broker.handlers import ROUTES
from broker.settings import Settings
from broker.store import StoreUnavailable

log = logging.getLogger("pair.broker")


async def _sweep(ctx: Context) -> None:
    """Mark Spaces whose agents went silent as stopped (the container is gone or paused)."""
    while True:
        await asyncio.sleep(ctx.settings.agent_interval)
        try:
            await agents.stop_silent(ctx)
        except StoreUnavailable:
            pass  # the store told the operator (rate-limited); the next sweep tries again
        except Exception:  # one failed sweep must not end the loop
            log.exception("sweeping silent Spaces failed")


async def _listen(ctx: Context) -> list[Unsubscribe]:
    """What every broker process hears on the bus: streams to end (or refused, or dialed
    elsewhere), keys changed, Spaces whose agent or state moved."""

    async def space_changed(payload: bytes) -> None:
        ctx.hub.changed(payload.decode())

    return [
        await ctx.bus.subscribe(bus.STREAMS, functools.partial(streams.on_event, ctx)),
        await ctx.bus.subscribe(bus.SNAPSHOTS, functools.partial(snapshots.forget_keys, ctx)),
        await ctx.bus.subscribe(bus.SPACES, space_changed),
    ]


class BrokerApp(Starlette):
    """Starlette holding the broker's Context as a typed attribute, `app.ctx` (handlers reach it
    as `request.app.ctx`, middleware as `scope["app"].ctx`): every request reads it, and
    Starlette's `app.state` is an untyped attribute bag costing a method call per read."""

    ctx: Context


def create_app(settings: Settings | None = None, *, ctx: Context | None = None) -> BrokerApp:
    """An app serving `ctx`, or one that opens its own context from `settings` on start-up, in
    the server's event loop (the store's contract: broker/store/__init__.py), and closes it on
    shutdown."""
    openapi_doc: list[bytes] = []  # built on first request: it states this broker's settings

    async def jwks(request: Request) -> Response:
        keyring = request.app.ctx.keyring
        await keyring.update()
        return http.json_response(200, keyring.jwks(), {"Cache-Control": "public, max-age=300"})

    async def openapi_json(request: Request) -> Response:
        if not openapi_doc:
            document = openapi.document(max_token_ttl=request.app.ctx.settings.max_token_ttl)
            openapi_doc.append(json.dumps(document, separators=(",", ":")).encode())
        return http.json_response(200, openapi_doc[0])

    @asynccontextmanager
    async def lifespan(app: BrokerApp) -> AsyncIterator[None]:
        own = ctx is None
        app.ctx = await open_context(settings or Settings.load(), create=True) if ctx is None else ctx
        app.ctx.started_at = app.ctx.now()
        app.ctx.listen_keys_changed(snapshots.keys_changed)  # agents hear of new keys at once
        beating = await peering.start(app.ctx)  # among replicas: registered, beating
        if beating is None:  # a single broker: whatever the log holds open ended with the last run
            await app.ctx.store.close_dangling_streams(app.ctx.now())
        sweeper = asyncio.create_task(_sweep(app.ctx))
        listening = await _listen(app.ctx)
        relaying = None  # what the admin verbs announce, through the database; a shared bus carries it itself
        if not app.ctx.bus.shared:
            newest = await app.ctx.store.outbox_newest()  # what came before this broker is moot
            relaying = asyncio.create_task(outbox.relay(app.ctx, newest))
        app.ctx.bus.on_gap(functools.partial(streams.recheck, app.ctx))
        try:
            yield
        finally:
            sweeper.cancel()
            if relaying is not None:
                relaying.cancel()
            for unsubscribe in listening:
                await unsubscribe()
            await peering.stop(app.ctx, beating)
            await agents.flush_seen(app.ctx)  # so the next start knows when agents were last seen
            if own:
                await app.ctx.close()

    routes: list[BaseRoute] = list(ROUTES)
    routes += [
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    routes += relay.ROUTES  # WebSockets: the agent's control channel and streams
    routes += relay.INTERNAL_ROUTES  # a replica claiming its stream's agent end (broker.peering)
    routes += relay.INTERNAL_HTTP_ROUTES  # a replica checking its own address
    routes += downloads.ROUTES  # /install.sh and /download/pair.whl, for self-hosted teams
    routes += web.routes()  # the web page (/, /signin, /web/…) and POST /api/v1/web-links
    app = BrokerApp(
        routes=routes,
        lifespan=lifespan,
        # Hosts under the apps domain are shared ports' (broker.app_gate), before any broker route;
        # requests of both are counted (broker.metrics).
        middleware=[
            Middleware(metrics.RequestMetrics),
            Middleware(AppsGate),
            Middleware(http.ExactRoutes, routes=ROUTES),
        ],
        exception_handlers={
            Problem: http.on_problem,
            StoreUnavailable: http.on_problem,
            HTTPException: http.on_http_exception,
            Exception: http.on_error,
        },
    )
    if ctx is not None:
        app.ctx = ctx
    return app
