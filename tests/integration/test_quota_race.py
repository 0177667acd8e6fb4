"""Racing requests cannot both slip under a quota (issue 16): 20 concurrent `up` requests against
a real `pair-broker serve` (SQLite) whose compute quota fits 7 of them. The containers are fake
agents at the protocol level: each bootstraps over HTTP and holds its control channel open
(the broker's `up` needs a connected agent)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect

from pair.api import endpoints as ep
from pair.api import models as m
from tests.support.broker import RealBroker

pytestmark = pytest.mark.integration

SPACES = 20
FIT = 7  # the compute quota, with a template of 1 unit


def admin(broker: RealBroker, *args: str) -> str:
    result = broker.admin(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def wait_states(api: httpx.AsyncClient, want: str, count: int) -> list[m.Space]:
    for _ in range(200):
        spaces = msgspec.json.decode((await api.get(ep.SPACES.path)).content, type=list[m.Space])
        if sum(s.state == want for s in spaces) == count:
            return spaces
        await asyncio.sleep(0.05)
    raise AssertionError(f"not {count} Spaces {want}: {[s.state for s in spaces]}")


async def race(broker: RealBroker) -> None:
    key = broker.add_user("racer@example.com", broker.data_dir.parent)
    async with httpx.AsyncClient(base_url=broker.url, timeout=30) as anonymous:
        login = await anonymous.post(ep.LOGIN.path, json={"email": "racer@example.com", "auth_key": key.read_text()})
        assert login.status_code == 200, login.text
    session = login.json()["session_token"]
    async with (
        httpx.AsyncClient(base_url=broker.url, headers={"Authorization": f"Bearer {session}"}, timeout=30) as api,
        AsyncExitStack() as agents,
    ):
        channels: list[ClientConnection] = []
        ids = []
        for i in range(SPACES):
            issued = (await api.post(ep.AUTHORIZE.path, json={"name": f"s{i}"})).json()
            boot = await api.post(
                ep.BOOTSTRAP.path, json={"token": issued["token"], "instance_id": f"box-{i}", "facts": {}}
            )
            assert boot.status_code == 200, boot.text
            ws_url = broker.url.replace("http", "ws", 1) + ep.AGENT_CONNECT
            channel = await agents.enter_async_context(
                connect(ws_url, additional_headers={"Authorization": f"Bearer {boot.json()['agent_credential']}"})
            )
            channels.append(channel)
            ids.append(issued["space"]["id"])
        for space_id in ids:  # down while connected: stopping, until the agent says stopped
            assert (await api.post(ep.DOWN.path.format(space_id=space_id))).status_code == 200
        stopped = m.HeartbeatMessage(heartbeat=m.Heartbeat(instance_id="", state="stopped"))
        for i, channel in enumerate(channels):
            stopped.heartbeat.instance_id = f"box-{i}"
            await channel.send(msgspec.json.encode(stopped).decode())
        await wait_states(api, "stopped", SPACES)

        admin(broker, "quota", "set", "racer@example.com", "--compute", str(FIT))
        answers = await asyncio.gather(*(api.post(ep.UP.path.format(space_id=space_id)) for space_id in ids))

        codes = sorted(a.status_code for a in answers)
        assert codes == [200] * FIT + [403] * (SPACES - FIT), codes
        refusals = {a.json()["message"] for a in answers if a.status_code == 403}
        assert refusals == {"You are using 7 of 7 compute units; template t needs 1."}
        quota = (await api.get(ep.QUOTA.path)).json()
        compute = next(line for line in quota["lines"] if line["resource"] == "compute")
        assert (compute["used"], compute["limit"]) == (FIT, FIT)
        await wait_states(api, "stopped", SPACES - FIT)


def test_twenty_racing_ups_start_exactly_as_many_spaces_as_the_quota_fits(live_broker: RealBroker) -> None:
    admin(live_broker, "templates", "add", "t", "--compute", "1", "--storage", "0", "--default")
    asyncio.run(race(live_broker))
