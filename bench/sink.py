"""A TCP server standing in for sshd behind the relay: per connection, first an SSH greeting
line (GREETING: the agent checks that what it serves greets as sshd does, RFC 4253 4.2), then a
9-byte header from the peer (b"U" or b"D", then the byte count, big-endian); "U": read that many bytes, answer b"k";
"D": send that many bytes. Then wait for the peer to close."""

from __future__ import annotations

import asyncio
import os

CHUNK = 64 * 1024
PAYLOAD = os.urandom(CHUNK)  # random bytes: what SSH traffic looks like
GREETING = b"SSH-2.0-pair-bench-sink\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(GREETING)
        header = await reader.readexactly(9)
        mode, n = header[:1], int.from_bytes(header[1:], "big")
        if mode == b"U":
            got = 0
            while got < n:
                data = await reader.read(1 << 20)
                if not data:
                    return
                got += len(data)
            writer.write(b"k")
        else:
            sent = 0
            while sent < n:
                chunk = PAYLOAD[: min(CHUNK, n - sent)]
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        await writer.drain()
        await reader.read()  # until the peer closes
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"sink listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
