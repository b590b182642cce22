"""Python `websockets` as a real peer of `sonar` (run by `cargo xtask conformance`).

  py_peer.py client URL   checks against `sonar serve --ping-interval 0.2 --ping-timeout 2`
  py_peer.py server       serves on 127.0.0.1:0, prints `port N`, then one result line per
                          connection that `sonar client` makes (path names the scenario)

Every result is one stdout line: `ok CHECK detail` or `FAIL CHECK: reason`. Every wait is
bounded. Exit status 0 only if every check passed.
"""

import asyncio
import os
import sys

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.frames import Opcode

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20]
PINGS = [b"\x0d\x90\x0f\x00", b"", bytes(range(125))]
LIMIT = 5.0
failures = 0


def report(check, ok, detail=""):
    global failures
    if ok:
        print(f"ok {check} {detail}".rstrip(), flush=True)
    else:
        failures += 1
        print(f"FAIL {check}: {detail}", flush=True)


def count_pings(ws):
    """Counts the Ping frames the peer sends us (websockets has no ping hook)."""
    seen = {"pings": 0}
    original = ws.process_event

    def hook(event):
        if getattr(event, "opcode", None) is Opcode.PING:
            seen["pings"] += 1
        return original(event)

    ws.process_event = hook
    return seen


def payload(size, text):
    """`size` characters of text (ASCII and two-byte UTF-8, compressible) or `size` random
    bytes (incompressible)."""
    if text:
        return ("sonar-\u00e9-" * (size // 8 + 1))[:size]
    return os.urandom(size)


def deflate_check(headers):
    """permessage-deflate (websockets' default) was agreed in the opening handshake."""
    agreed = headers.get("Sec-WebSocket-Extensions") or ""
    report("deflate", agreed.startswith("permessage-deflate"), f"agreed: {agreed!r}")


async def echo_checks(url):
    async with connect(url, ping_interval=None, max_size=1 << 21) as ws:
        deflate_check(ws.response.headers)
        for text in (True, False):
            kind = "text" if text else "binary"
            for size in SIZES:
                data = payload(size, text)
                await ws.send(data)
                back = await asyncio.wait_for(ws.recv(), LIMIT)
                if back != data:
                    report(f"echo-{kind}-{size}", False, f"got {len(back)} bytes back")
                    return
        report("echo", True, f"text+binary sizes {SIZES}")
        for data in PINGS:
            waiter = await ws.ping(data)
            try:
                await asyncio.wait_for(waiter, LIMIT)
            except asyncio.TimeoutError:
                report("their-ping", False, f"no identical pong for {data[:8].hex()}.. ({len(data)} B)")
                return
        report("their-ping", True, "pongs identical for 4 B 0d900f00, 0 B, 125 B")
        await ws.close()


async def our_keepalive(url):
    async with connect(url, ping_interval=None) as ws:
        seen = count_pings(ws)
        await asyncio.sleep(1.0)
        await ws.send("after idle")
        back = await asyncio.wait_for(ws.recv(), LIMIT)
        ok = back == "after idle" and seen["pings"] >= 2
        report("our-keepalive", ok, f"{seen['pings']} pings from sonar in 1 s idle")
        await ws.close()


async def their_keepalive(url):
    async with connect(url, ping_interval=0.2, ping_timeout=1) as ws:
        await asyncio.sleep(1.2)
        await ws.send("still here")
        back = await asyncio.wait_for(ws.recv(), LIMIT)
        report("their-keepalive", back == "still here", "open after 1.2 s with ping_interval=0.2 ping_timeout=1")
        await ws.close()


async def close_with(url, code, reason):
    async with connect(url, ping_interval=None) as ws:
        await ws.close(code, reason)
        got = (ws.close_code, ws.close_reason)
        report(f"close-{code}", got[0] == code, f"sonar echoed {got}")


async def await_shutdown(url):
    """Holds a connection while the driver stops sonar (SIGTERM): expects 1001."""
    async with connect(url, ping_interval=None) as ws:
        print("holding", flush=True)
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except Exception:
            pass
        await asyncio.wait_for(ws.wait_closed(), LIMIT)
        report("sonar-close", ws.close_code == 1001, f"sonar closed with {ws.close_code}")


async def client(url):
    await echo_checks(url)
    await our_keepalive(url)
    await their_keepalive(url)
    await close_with(url, 1000, "")
    await close_with(url, 4001, "custom")
    await await_shutdown(url)


async def handler(ws):
    path = ws.request.path
    seen = count_pings(ws)
    try:
        if path == "/echo":
            # sonar client --echo: exact bytes back, our pings answered, then we close 1000.
            deflate_check(ws.response.headers)
            for text in (True, False):
                for size in SIZES:
                    data = payload(size, text)
                    await ws.send(data)
                    back = await asyncio.wait_for(ws.recv(), LIMIT)
                    if back != data:
                        report("echo", False, f"{size} B {'text' if text else 'binary'} not echoed")
                        return
            report("echo", True, f"text+binary sizes {SIZES}")
            for data in PINGS:
                waiter = await ws.ping(data)
                try:
                    await asyncio.wait_for(waiter, LIMIT)
                except asyncio.TimeoutError:
                    report("their-ping", False, f"no identical pong for {len(data)} B")
                    return
            report("their-ping", True, "pongs identical for 4 B 0d900f00, 0 B, 125 B")
            await ws.close(1000)
        elif path == "/idle":
            # sonar client --ping-interval 0.2: 1 s of idle stdin, one line, then EOF. Our own
            # keepalive is off here, so sonar's pings are not deferred by inbound traffic.
            if ws.keepalive_task is not None:
                ws.keepalive_task.cancel()
            async for message in ws:
                await ws.send(message)
            await ws.wait_closed()
            report("our-keepalive", seen["pings"] >= 2, f"{seen['pings']} pings from sonar in 1 s idle")
            report("close-1000", ws.close_code == 1000, f"sonar client closed with {ws.close_code}")
        elif path == "/their":
            # sonar client without keepalive, 1.2 s idle under ping_interval=0.2 ping_timeout=1:
            # an unanswered ping would close with 1011.
            async for message in ws:
                await ws.send(message)
            await ws.wait_closed()
            report(
                "their-keepalive",
                ws.close_code == 1000,
                f"open over 1.2 s with ping_interval=0.2 ping_timeout=1, closed {ws.close_code}",
            )
        elif path == "/close4001":
            await ws.close(4001, "custom")
            report("sent-4001", ws.close_code == 4001, f"close handshake {ws.close_code}")
        else:
            report("path", False, path)
    except Exception as e:  # noqa: BLE001
        report(path.strip("/") or "connection", False, repr(e))


async def server():
    async with serve(
        handler, "127.0.0.1", 0, ping_interval=0.2, ping_timeout=1, max_size=1 << 21
    ) as srv:
        port = srv.sockets[0].getsockname()[1]
        print(f"port {port}", flush=True)
        # The driver closes our stdin when it is done.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        try:
            asyncio.run(asyncio.wait_for(client(sys.argv[2]), 60))
        except Exception as e:  # noqa: BLE001
            report("client", False, repr(e))
    elif sys.argv[1:] == ["server"]:
        asyncio.run(server())
    else:
        sys.exit("usage: py_peer.py client URL | server")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
