# mypy: ignore-errors
# (runs in the peers virtualenv, on PyPI mcp 1.x; the project's mypy sees mcp 2.x)
"""Client driver: PyPI ``mcp`` 1.x (``ClientSession`` over ``streamablehttp_client`` or
``sse_client``), run by the peers virtualenv (.cache/peers-venv):

    .cache/peers-venv/bin/python tests/interop/clients/py1_client.py JOBS.json RESULTS.json

The same job format and answers as py2_client.py (tests/interop/wire.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import mcp.types as types
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamablehttp_client
from pydantic import AnyUrl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wire import error_text, expand, summarize

PARALLEL = 8  # sessions at once: most of their time is spent waiting on servers
TIMEOUT = 30.0
# A list_changed may queue behind the other clients' toggles of a busy gateway.
NOTIFIED_WITHIN = 20.0


def dump(model: Any) -> Any:
    return summarize(model.model_dump(mode="json", by_alias=True, exclude_none=True))


async def trigger(session: ClientSession, action: dict[str, Any]) -> None:
    if action["kind"] == "call":
        result = await session.call_tool(action["name"], action.get("args") or {})
        if result.isError:
            raise RuntimeError(f"the trigger {action['name']} failed: {dump(result)}")
        return
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.request(
            action["method"], action["url"], headers=action["headers"], json=action["body"]
        )
        answer.raise_for_status()


async def run_op(session: ClientSession, op: dict[str, Any], changed: asyncio.Event) -> dict:
    kind = op["op"]
    if kind == "list_tools":
        tools: list[Any] = []
        cursor = None
        for _ in range(20):
            page = await session.list_tools(cursor=cursor)
            tools += [dump(tool) for tool in page.tools]
            cursor = page.nextCursor
            if not cursor:
                break
        return {"ok": True, "value": tools}
    if kind == "call":
        steps: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append(progress)

        result = await session.call_tool(
            op["name"],
            expand(op.get("args") or {}),
            progress_callback=on_progress if op.get("progress") else None,
        )
        return {"ok": True, "value": dump(result), "progress": len(steps)}
    if kind == "read":
        return {"ok": True, "value": dump(await session.read_resource(AnyUrl(op["uri"])))}
    if kind == "prompt":
        return {"ok": True, "value": dump(await session.get_prompt(op["name"], op.get("args")))}
    if kind == "list_changed":
        changed.clear()
        await asyncio.sleep(0.5)  # the GET stream is open
        started = time.monotonic()
        await trigger(session, op["trigger"])
        triggered = time.monotonic()
        await asyncio.wait_for(changed.wait(), timeout=NOTIFIED_WITHIN)
        if op.get("restore"):
            await trigger(session, op["restore"])
        # how long the trigger took and the notification after it (not compared, reported)
        timing = {"trigger": triggered - started, "notified": time.monotonic() - triggered}
        return {"ok": True, "value": "notified", "timing": timing}
    raise ValueError(f"unknown op {kind}")


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    target = job["target"]
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", None)
        if isinstance(root, types.ToolListChangedNotification):
            changed.set()

    answer: dict[str, Any] = {"id": job["id"], "connect": {"ok": False}, "results": {}}
    try:
        async with AsyncExitStack() as stack:
            headers = target.get("headers") or {}
            if target["transport"] == "sse":
                streams = await stack.enter_async_context(
                    sse_client(target["url"], headers=headers, timeout=30)
                )
            else:
                streams = await stack.enter_async_context(
                    streamablehttp_client(target["url"], headers=headers, timeout=30)
                )
            session = await stack.enter_async_context(
                ClientSession(streams[0], streams[1], message_handler=on_message)
            )
            init = await asyncio.wait_for(session.initialize(), timeout=TIMEOUT)
            answer["connect"] = {"ok": True, "protocol": init.protocolVersion}
            for op in job["ops"]:
                started = time.monotonic()
                try:
                    limit = TIMEOUT * 2 if op["op"] == "list_changed" else TIMEOUT
                    result = await asyncio.wait_for(run_op(session, op, changed), timeout=limit)
                except Exception as error:
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
