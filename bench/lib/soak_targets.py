"""Hostile targets and a flapping remote_write receiver for bench/soak.sh, in one asyncio process.

usage: soak_targets.py HOST BASE_PORT STATS_FILE

On HOST (loopback), from BASE_PORT:
  +0  silent TCP: accepts, reads, never answers (HTTP and TCP probes meet their deadline)
  +1  trickle HTTP: answers a 200 with Content-Length 1 MB, then one byte every 200 ms
  +2  resetting peer: accepts, reads the request, closes with SO_LINGER 0 (an RST)
  +3  silent DNS: a UDP socket that reads every question and never answers
  +10 remote_write receiver: takes each POST's body (snappy-compressed protobuf; the length is
      all it checks) and answers 200 for 30 s, then for 30 s alternately 503 or closes the
      connection without answering, and so on.

Every 10 s it rewrites STATS_FILE with its counters (one `name value` per line).
"""
import asyncio
import socket
import struct
import sys
import time

HOST, BASE, STATS = sys.argv[1], int(sys.argv[2]), sys.argv[3]
stats = {
    "silent_conns": 0, "trickle_conns": 0, "reset_conns": 0, "dns_questions": 0,
    "rw_posts": 0, "rw_200": 0, "rw_503": 0, "rw_closed": 0, "rw_bytes_accepted": 0,
    "rw_bad_requests": 0,
}
open_conns = set()


async def read_head(reader):
    """The request head, or None when the peer went away first."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
            ConnectionError):
        return None


async def silent(reader, writer):
    stats["silent_conns"] += 1
    open_conns.add(writer)
    try:
        while await reader.read(4096):  # until the prober gives up and closes
            pass
    except ConnectionError:
        pass
    finally:
        open_conns.discard(writer)
        writer.close()


async def trickle(reader, writer):
    stats["trickle_conns"] += 1
    try:
        if await read_head(reader) is None:
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1048576\r\n\r\n")
        for _ in range(600):  # 2 minutes at most, far beyond any deadline in the soak
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.2)
    except ConnectionError:
        pass
    finally:
        writer.close()


async def reset(reader, writer):
    stats["reset_conns"] += 1
    await read_head(reader)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class SilentDns(asyncio.DatagramProtocol):
    def datagram_received(self, data, addr):
        stats["dns_questions"] += 1


def rw_phase():
    """'up' for 30 s, then 'down' for 30 s (on the wall clock, so the log can be lined up)."""
    return "up" if int(time.time() // 30) % 2 == 0 else "down"


async def receiver(reader, writer):
    try:
        while True:
            head = await read_head(reader)
            if head is None:
                return
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if not head.startswith(b"POST ") or length <= 0 or length > 64 << 20:
                stats["rw_bad_requests"] += 1
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            body = await reader.readexactly(length)
            stats["rw_posts"] += 1
            if rw_phase() == "up":
                stats["rw_200"] += 1
                stats["rw_bytes_accepted"] += len(body)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            elif stats["rw_posts"] % 2:
                stats["rw_503"] += 1
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            else:
                stats["rw_closed"] += 1
                writer.transport.abort()
                return
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        return
    finally:
        writer.close()


async def write_stats():
    while True:
        stats["silent_open_now"] = len(open_conns)
        with open(STATS + ".tmp", "w") as f:
            for k, v in stats.items():
                f.write(f"{k} {v}\n")
        import os
        os.replace(STATS + ".tmp", STATS)
        await asyncio.sleep(10)


async def main():
    servers = [
        await asyncio.start_server(silent, HOST, BASE, backlog=1024),
        await asyncio.start_server(trickle, HOST, BASE + 1, backlog=1024),
        await asyncio.start_server(reset, HOST, BASE + 2, backlog=1024),
        await asyncio.start_server(receiver, HOST, BASE + 10, backlog=64),
    ]
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(SilentDns, local_addr=(HOST, BASE + 3))
    print("ready", flush=True)
    await asyncio.gather(write_stats(), *(s.serve_forever() for s in servers))


asyncio.run(main())
