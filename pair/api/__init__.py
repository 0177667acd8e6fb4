"""The broker's wire contract and the client that speaks it.

- `models`: every request/response body and the token's claims
- `endpoints`: every JSON endpoint (method, path, auth, body types)
- `client`: the HTTP client the CLI and the agent use
- `errors`: the exception tree the CLI prints
- `closecodes`: the WebSocket close codes the broker, the agent and `pair spaces proxy` share

Nothing is re-exported here, so the broker can import `pair.api.models` without pulling in httpx.
"""
