"""Who is connected to this broker process right now: each Space's agent control channel, and
each open tunnel. Pushing to an agent and ending a person's sessions go through here.

It is in-process state: with several broker processes, a push reaches only the agents connected
to the process that made the change, and the others learn it at their next heartbeat (a second
or so later) — which is why every heartbeat reply carries the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import msgspec
from starlette.websockets import WebSocket

from pair.api.models import BrokerMessage


@dataclass(eq=False)
class AgentLink:
    space_id: str
    ws: WebSocket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: BrokerMessage) -> None:
        async with self.lock:  # one frame at a time from the many tasks that push
            await self.ws.send_text(msgspec.json.encode(message).decode())


@dataclass(eq=False)
class Tunnel:
    id: str
    space_id: str
    user_id: str
    email: str
    client: WebSocket
    agent: asyncio.Future[WebSocket] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    done: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    bytes_in: int = 0
    bytes_out: int = 0
    close_reason: str = ""

    async def end(self, reason: str, code: int = 4403) -> None:
        """Close both sides; the splice notices and finishes the log entry."""
        if self.close_reason:
            return
        self.close_reason = reason
        with contextlib.suppress(Exception):
            await self.client.close(code=code, reason=reason[:120])
        if self.agent.done() and not self.agent.cancelled():
            with contextlib.suppress(Exception):
                await self.agent.result().close(code=code, reason=reason[:120])


class Hub:
    def __init__(self) -> None:
        self.agents: dict[str, AgentLink] = {}
        self.tunnels: dict[str, Tunnel] = {}
        self._changes: dict[str, asyncio.Event] = {}  # per Space, for those waiting on it

    def attach(self, link: AgentLink) -> AgentLink | None:
        """Register an agent's channel; return the one it replaces (a reconnect), if any."""
        old = self.agents.get(link.space_id)
        self.agents[link.space_id] = link
        self.changed(link.space_id)
        return old

    def changed(self, space_id: str) -> None:
        """Wake everyone waiting on this Space: its agent attached, or its state or health moved."""
        event = self._changes.pop(space_id, None)
        if event is not None:
            event.set()

    async def wait_changed(self, space_id: str, timeout: float) -> bool:
        """Wait until `changed(space_id)` or `timeout` seconds; True if it changed."""
        event = self._changes.setdefault(space_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def detach(self, link: AgentLink) -> None:
        if self.agents.get(link.space_id) is link:
            del self.agents[link.space_id]

    async def disconnect(self, space_id: str, reason: str) -> None:
        link = self.agents.pop(space_id, None)
        if link is not None:
            with contextlib.suppress(Exception):
                await link.ws.close(code=4401, reason=reason)

    def connected(self, space_id: str) -> bool:
        return space_id in self.agents

    async def send(self, space_id: str, message: BrokerMessage) -> bool:
        link = self.agents.get(space_id)
        if link is None:
            return False
        try:
            await link.send(message)
        except Exception:  # the channel is going away; its handler cleans up
            return False
        return True

    def tunnels_of(self, space_id: str, user_ids: set[str] | None = None) -> list[Tunnel]:
        return [
            t for t in self.tunnels.values() if t.space_id == space_id and (user_ids is None or t.user_id in user_ids)
        ]

    async def end_tunnels(self, space_id: str, reason: str, user_ids: set[str] | None = None) -> int:
        tunnels = self.tunnels_of(space_id, user_ids)
        await asyncio.gather(*(t.end(reason) for t in tunnels))
        return len(tunnels)

    async def close_all(self, code: int, reason: str, agent_reason: str) -> None:
        """Close every tunnel (`reason` reaches the person through `pair spaces proxy`) and every
        agent channel, e.g. with 1012 when the broker stops: sent before the server drops the
        connections, so each side knows why and the agents come back at once."""
        await asyncio.gather(*(t.end(reason, code) for t in list(self.tunnels.values())))

        async def close(link: AgentLink) -> None:
            with contextlib.suppress(Exception):
                await link.ws.close(code=code, reason=agent_reason)

        await asyncio.gather(*(close(link) for link in list(self.agents.values())))
