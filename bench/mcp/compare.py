"""Figures for BENCHMARKS.md's "MCP" section: ha-fetchers' /mcp beside Home
Assistant's own `mcp_server`, on the same real HA, with the same client (the
official Python SDK), in one run. Run by scripts/bench-mcp.sh.

Calls are sequential (one in flight), so the client never competes with
itself; each p50 is over CALLS calls after WARMUP. Environment: HA_URL,
HA_TOKEN, OURS_URL (…/mcp), OURS_TOKEN, and optionally BIG_URL (an instance
mirroring a 10,000-entity house) for the last figure.
"""

import asyncio
import json
import os
import statistics
import time

import httpx2
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

HA_URL = os.environ["HA_URL"].rstrip("/")
HA_TOKEN = os.environ["HA_TOKEN"]
CALLS = int(os.environ.get("CALLS", "200"))
WARMUP = 10


async def ensure_ha_mcp_server():
    """Creates HA's mcp_server config entry (Assist API) through the REST config flow, once."""
    auth = {"Authorization": f"Bearer {HA_TOKEN}"}
    async with httpx2.AsyncClient(base_url=HA_URL, headers=auth, timeout=30) as h:
        entries = (await h.get("/api/config/config_entries/entry")).json()
        if any(e["domain"] == "mcp_server" for e in entries):
            return
        flow = (await h.post("/api/config/config_entries/flow", json={"handler": "mcp_server"})).json()
        done = (await h.post(f"/api/config/config_entries/flow/{flow['flow_id']}",
                             json={"llm_hass_api": "assist"})).json()
        assert done.get("type") == "create_entry", done
        await asyncio.sleep(2)


def size(result):
    return len(json.dumps(result.model_dump(by_alias=True, mode="json", exclude_none=True),
                          separators=(",", ":")))


def text(result):
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def measure(session, tool, args, count_lines):
    """tools/list bytes, the tool's answer, its entity count, and the p50 of CALLS calls."""
    listed = await session.list_tools()
    answer = await session.call_tool(tool, args)
    body = text(answer)
    times = []
    for i in range(WARMUP + CALLS):
        t = time.perf_counter()
        await session.call_tool(tool, args)
        if i >= WARMUP:
            times.append((time.perf_counter() - t) * 1000)
    return {
        "tools": len(listed.tools),
        "tools_list_bytes": size(listed),
        "answer_bytes": len(body.encode()),
        "entities": count_lines(body),
        "p50_ms": statistics.median(times),
    }


def ha_entities(body):
    # GetLiveContext answers JSON whose `result` is YAML: one `- names:` per entity.
    try:
        body = json.loads(body).get("result", body)
    except (ValueError, AttributeError):
        pass
    return sum(1 for line in body.splitlines() if line.lstrip().startswith("- names:"))


def our_entities(body):
    return sum(1 for line in body.splitlines() if line.startswith("- "))


async def ours(url, token):
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as s:
                await s.initialize()
                return await measure(s, "live_context", {"limit": 100000}, our_entities)


async def theirs():
    headers = {"Authorization": f"Bearer {HA_TOKEN}"}
    async with sse_client(f"{HA_URL}/mcp_server/sse", headers=headers) as streams:
        async with ClientSession(streams[0], streams[1]) as s:
            await s.initialize()
            return await measure(s, "GetLiveContext", {}, ha_entities)


async def main():
    await ensure_ha_mcp_server()
    ha = await theirs()
    us = await ours(os.environ["OURS_URL"], os.environ["OURS_TOKEN"])
    big = None
    if os.environ.get("BIG_URL"):
        big = await ours(os.environ["BIG_URL"], os.environ["OURS_TOKEN"])
    print(json.dumps({"ha": ha, "ours": us, "ours_10k": big}, indent=2))
    per = lambda m: m["answer_bytes"] / max(m["entities"], 1)
    rows = [
        ("tools/list bytes", f"{us['tools_list_bytes']:,} ({us['tools']} tools)",
         f"{ha['tools_list_bytes']:,} ({ha['tools']} tools)", us["tools_list_bytes"] / ha["tools_list_bytes"]),
        ("live context bytes per entity line", f"{per(us):.1f} ({us['entities']} entities, with ids)",
         f"{per(ha):.1f} ({ha['entities']} exposed entities, no ids)", per(us) / per(ha)),
        ("live context p50", f"{us['p50_ms']:.2f} ms", f"{ha['p50_ms']:.2f} ms",
         ha["p50_ms"] / us["p50_ms"]),
    ]
    if big:
        rows.append(("our live context p50 at 10,000 entities (limit 100000, 64 KiB cap)",
                     f"{big['p50_ms']:.2f} ms ({big['entities']} lines shown)", "–", None))
    print("\n| figure | ha-fetchers | HA 2025.4.4 mcp_server | ratio |\n|---|---|---|---|")
    for name, a, b, r in rows:
        print(f"| {name} | {a} | {b} | {'–' if r is None else f'{r:.2f}×'} |")


asyncio.run(main())
