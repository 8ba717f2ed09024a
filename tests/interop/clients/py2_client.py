"""Client driver: the project's Python SDK 2.x (``mcp.Client``), also the stdio side of
``mcp-remote``.

    python -m tests.interop.clients.py2_client JOBS.json RESULTS.json

Runs every job of JOBS.json (tests/interop/wire.py) concurrently, at most ``PARALLEL`` at a
time, and writes the answers. A target's ``mode`` is the Client's: ``auto`` (2026-07-28,
``server/discover`` first, the handshake when the server does not know it) or ``legacy``
(the initialize handshake).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.interop.wire import error_text, expand, summarize

PARALLEL = 8  # sessions at once: most of their time is spent waiting on servers
TIMEOUT = 30.0
# A list_changed may queue behind the other clients' toggles of a busy gateway.
NOTIFIED_WITHIN = 20.0


def dump(model: Any) -> Any:
    return summarize(model.model_dump(mode="json", by_alias=True, exclude_none=True))


async def trigger(client: Client, action: dict[str, Any]) -> None:
    """Make the change a list_changed check waits for: a tool call or a gateway API request."""
    if action["kind"] == "call":
        result = await client.session.call_tool(action["name"], action.get("args") or {})
        if result.is_error:
            raise RuntimeError(f"the trigger {action['name']} failed: {dump(result)}")
        return
    async with httpx2.AsyncClient(timeout=30) as http:
        answer = await http.request(
            action["method"], action["url"], headers=action["headers"], json=action["body"]
        )
        answer.raise_for_status()


async def run_op(client: Client, op: dict[str, Any], changed: asyncio.Event) -> dict[str, Any]:
    kind = op["op"]
    if kind == "list_tools":
        tools: list[Any] = []
        cursor = None
        for _ in range(20):
            page = await client.list_tools(cursor=cursor)
            tools += [dump(tool) for tool in page.tools]
            cursor = page.next_cursor
            if not cursor:
                break
        return {"ok": True, "value": tools}
    if kind == "call":
        steps: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append(progress)

        result = await client.session.call_tool(
            op["name"],
            expand(op.get("args") or {}),
            progress_callback=on_progress if op.get("progress") else None,
        )
        return {"ok": True, "value": dump(result), "progress": len(steps)}
    if kind == "read":
        return {"ok": True, "value": dump(await client.read_resource(op["uri"]))}
    if kind == "prompt":
        return {"ok": True, "value": dump(await client.get_prompt(op["name"], op.get("args")))}
    if kind == "list_changed":
        if client.protocol_version >= "2026-07-28":
            async with client.listen(tools_list_changed=True) as subscription:
                started = time.monotonic()
                await trigger(client, op["trigger"])
                triggered = time.monotonic()
                await asyncio.wait_for(subscription.__anext__(), timeout=NOTIFIED_WITHIN)
        else:
            changed.clear()
            await asyncio.sleep(0.5)  # the GET stream is open
            started = time.monotonic()
            await trigger(client, op["trigger"])
            triggered = time.monotonic()
            await asyncio.wait_for(changed.wait(), timeout=NOTIFIED_WITHIN)
        if op.get("restore"):
            await trigger(client, op["restore"])
        # how long the trigger took and the notification after it (not compared, reported)
        timing = {"trigger": triggered - started, "notified": time.monotonic() - triggered}
        return {"ok": True, "value": "notified", "timing": timing}
    raise ValueError(f"unknown op {kind}")


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    target = job["target"]
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    answer: dict[str, Any] = {"id": job["id"], "connect": {"ok": False}, "results": {}}
    try:
        async with AsyncExitStack() as stack:
            if target["transport"] == "stdio":
                command = target["command"]
                params = StdioServerParameters(
                    command=command[0], args=command[1:], env=target.get("env")
                )
                errlog = stack.enter_context(open(target["stderr"], "a"))  # noqa: SIM115
                transport: Any = stdio_client(params, errlog=errlog)
            elif target["transport"] == "sse":
                transport = sse_client(target["url"], headers=target.get("headers"), timeout=30)
            else:
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers=target.get("headers") or {}, timeout=TIMEOUT)
                )
                transport = streamable_http_client(target["url"], http_client=http)
            client = Client(
                transport, mode=target.get("mode", "auto"), cache=None, message_handler=on_message
            )
            await asyncio.wait_for(stack.enter_async_context(client), timeout=TIMEOUT)
            answer["connect"] = {"ok": True, "protocol": client.protocol_version}
            for op in job["ops"]:
                started = time.monotonic()
                try:
                    limit = TIMEOUT * 2 if op["op"] == "list_changed" else TIMEOUT
                    result = await asyncio.wait_for(run_op(client, op, changed), timeout=limit)
                except BaseException as error:
                    if isinstance(error, asyncio.CancelledError) and not isinstance(
                        error, TimeoutError
                    ):
                        raise
                    result = {"ok": False, "error": error_text(error)}
                result["seconds"] = round(time.monotonic() - started, 2)
                answer["results"][op["id"]] = result
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        if not answer["connect"]["ok"]:
            answer["connect"] = {"ok": False, "error": error_text(error)}
        else:
            answer["closing_error"] = error_text(error)
    return answer


async def main(jobs_file: str, results_file: str) -> None:
    jobs = json.loads(Path(jobs_file).read_text())
    gate = asyncio.Semaphore(PARALLEL)

    async def bounded(job: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            try:
                return await asyncio.wait_for(run_job(job), timeout=TIMEOUT * 12)
            except TimeoutError:
                return {"id": job["id"], "connect": {"ok": False, "error": "job timed out"}}

    answers = await asyncio.gather(*(bounded(job) for job in jobs))
    Path(results_file).write_text(json.dumps(answers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
