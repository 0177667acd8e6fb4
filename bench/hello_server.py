"""The HTTP baseline: a bare Starlette app answering GET /hello (and POST /echo), served by uvicorn exactly as
`pair-broker serve` serves the broker (broker/serving.py: one process, loop/http "auto" = uvloop +
httptools, no access log, same WebSocket settings), on 127.0.0.1 with a pre-bound socket."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from broker import serving


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def echo(request: Request) -> Response:
    """A POST that reads its JSON body and answers a small one: the floor under the heartbeat."""
    body = await request.body()
    return Response(b'{"ok":true}' if body else b"{}", media_type="application/json")


def main() -> None:
    sock = serving.listen("127.0.0.1", 0)
    config = serving.config(Starlette(routes=[Route("/hello", hello), Route("/echo", echo, methods=["POST"])]))
    print(f"hello listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    serving.collect_garbage_less()  # as `pair-broker serve`
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
