"""Shared ports: a Space's web apps reached through the broker, each on its own origin.

- `hosts`: the apps domain setting and the `PORT--SPACE--OWNER.<apps domain>` addresses.
- `streams`: the byte-stream interface the proxy speaks to a target (the agent's stream to
  127.0.0.1:PORT in the container; a plain TCP connection in tests).
- `proxy`: one HTTP/1.1 request forwarded over a stream (h11), bodies streamed both ways.
- `websocket`: a WebSocket upgrade forwarded over a stream (wsproto), messages relayed both ways.
- `auth`: the app origin's own credential (ticket → host-only cookie), never the broker session.

Nothing here knows the store, the hub or who may see a port: the caller resolves the address to
a share, decides access, opens the stream, and hands them in (docs/architecture.md, "Shared
ports: the app proxy").
"""
