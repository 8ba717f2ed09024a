"""A loopback proxy that adds the gateway's bearer token to every request.

``python tests/conformance/auth_proxy.py --listen PORT --target PORT --token-file PATH``

The conformance suite cannot send an ``Authorization`` header, and the gateway never
serves an unauthenticated request, so the suite talks to this proxy instead: it reads
each request's head, replaces any ``Authorization`` line with the token read from
``--token-file`` (never from the command line, so it stays out of ``ps``), asks for
``Connection: close`` so every request gets a connection and a fresh head to rewrite,
and then relays the bytes both ways untouched — streamed responses (SSE) included.
Everything else, ``Host`` and ``Origin`` among them, reaches the gateway exactly as the
suite sent it, so the gateway's own Host/Origin checks are what the suite measures.

It listens on 127.0.0.1 only and forwards to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path

HEAD_LIMIT = 64 * 1024
_DROPPED = (b"authorization", b"connection", b"proxy-connection", b"keep-alive")


def rewrite_head(head: bytes, token: str) -> bytes:
    """The request head with our bearer token and ``Connection: close``."""
    lines = head.split(b"\r\n")
    kept = [lines[0]]
    for line in lines[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if line and name not in _DROPPED:
            kept.append(line)
    kept.append(b"Authorization: Bearer " + token.encode("ascii"))
    kept.append(b"Connection: close")
    return b"\r\n".join(kept) + b"\r\n\r\n"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _serve(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    *,
    target: int,
    token: str,
) -> None:
    upstream_writer: asyncio.StreamWriter | None = None
    try:
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        upstream_writer.write(rewrite_head(head[:-4], token))
        await upstream_writer.drain()
        await asyncio.gather(
            _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer)
        )
    except ConnectionError:
        pass
    finally:
        for writer in (upstream_writer, client_writer):
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


async def run(listen: int, target: int, token: str) -> None:
    server = await asyncio.start_server(
        lambda r, w: _serve(r, w, target=target, token=token),
        host="127.0.0.1",
        port=listen,
        limit=HEAD_LIMIT,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Loopback proxy adding a bearer token.")
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    args = parser.parse_args()
    token = args.token_file.read_text().strip()
    if not token or not token.isascii() or any(c in token for c in "\r\n "):
        parser.error("the token file must hold one token on one line")
    asyncio.run(run(args.listen, args.target, token))


if __name__ == "__main__":
    main()
