"""Drives ha-fetchers' /mcp with the official Model Context Protocol Python
SDK (`mcp` on PyPI): a client nobody on this project wrote.

Run by tests/it/mcp_python.rs against the real binary's library, a real Home
Assistant and a fresh MariaDB database; exits non-zero at the first check
that fails, printing what it saw. Environment: MCP_URL, MCP_TOKEN, HA_URL,
HA_TOKEN, MYSQL_DATABASE (MYSQL_HOST/MYSQL_PORT default to 127.0.0.1:3306).
"""

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

URL = os.environ["MCP_URL"]
TOKEN = os.environ["MCP_TOKEN"]
HA_URL = os.environ["HA_URL"].rstrip("/")
HA_TOKEN = os.environ["HA_TOKEN"]
DB = os.environ["MYSQL_DATABASE"]
WAIT = 10.0


def check(ok, what, seen=None):
    if not ok:
        print(f"FAILED: {what}" + (f"\n  saw: {seen!r}" if seen is not None else ""))
        sys.exit(1)
    print(f"ok: {what}")


def text(result):
    return "\n".join(getattr(c, "text", "") for c in result.content)


def mysql(sql):
    subprocess.run(
        ["mysql", "-h", os.environ.get("MYSQL_HOST", "127.0.0.1"),
         "-P", os.environ.get("MYSQL_PORT", "3306"), "-uroot", DB, "-e", sql],
        check=True,
    )


async def heard_within(queue, want, seconds=WAIT):
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            got = await asyncio.wait_for(queue.get(), left)
        except asyncio.TimeoutError:
            return None
        if got == want:
            return time.monotonic()


async def main():
    heard = asyncio.Queue()

    async def on_message(m):
        m = getattr(m, "root", m)
        if isinstance(m, Exception):
            return
        method = getattr(m, "method", None)
        if method == "notifications/resources/updated":
            heard.put_nowait(("updated", str(m.params.uri)))
        elif method == "notifications/tools/list_changed":
            heard.put_nowait(("tools", ""))

    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with create_mcp_http_client(headers=auth) as http:
        async with streamable_http_client(URL, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write, message_handler=on_message) as s:
                init = await s.initialize()
                check(init.server_info.name == "ha-fetchers", "initialize", init.server_info)

                tools = (await s.list_tools()).tools
                names = [t.name for t in tools]
                check(names[:3] == ["live_context", "search_entities", "get_entity"],
                      "built-in tools come first", names)
                check("ha_lights_on" in names, "a fetcher is a tool", names)

                r = await s.call_tool("ha_lights_on", {})
                check(not r.is_error and "count" in (r.structured_content or {}),
                      "a fetcher call answers text and structured content", r)

                r = await s.call_tool("live_context", {"domain": "light"})
                check(not r.is_error and "- light.bed_light" in text(r),
                      "live context carries entity ids", text(r))

                r = await s.call_tool("live_context", {"limit": "many"})
                check(r.is_error and "`limit`" in text(r), "a bad argument is named", text(r))
                r = await s.call_tool("get_entity", {})
                check(r.is_error and "`entity_id`" in text(r), "a missing argument is named", text(r))
                r = await s.call_tool("no_such_tool", {})
                check(r.is_error and "unknown tool" in text(r), "an unknown tool is a tool error", text(r))

                p = await s.get_prompt("home_status", {})
                said = p.messages[0].content.text
                check(said.startswith("Home status") and "Lights:" in said, "a prompt renders live", said)

                await s.subscribe_resource("ha://entity/light.bed_light")
                async with httpx2.AsyncClient() as ha:
                    r = await ha.post(f"{HA_URL}/api/services/light/toggle",
                                      headers={"Authorization": f"Bearer {HA_TOKEN}"},
                                      json={"entity_id": "light.bed_light"})
                    check(r.status_code == 200, "HA toggles light.bed_light", r.status_code)
                t0 = time.monotonic()
                at = await heard_within(heard, ("updated", "ha://entity/light.bed_light"))
                check(at is not None, "the subscriber hears of the change in HA")
                print(f"  HA service call → notification: {1000 * (at - t0):.1f} ms")

                mysql("INSERT INTO data_fetchers (name, description, source, params) VALUES "
                      "('mcp_probe', 'Inserted by the MCP client test', 'entities', "
                      "'{\"domain\": \"switch\"}')")
                at = await heard_within(heard, ("tools", ""))
                check(at is not None, "tools/list_changed after a row is inserted")
                names = [t.name for t in (await s.list_tools()).tools]
                check("mcp_probe" in names, "the inserted fetcher is listed", names)
                r = await s.call_tool("mcp_probe", {})
                check(not r.is_error, "the inserted fetcher runs", text(r))

    async with httpx2.AsyncClient() as h:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "no-token", "version": "0"}}}
        r = await h.post(URL, json=init,
                         headers={"Accept": "application/json, text/event-stream"})
        check(r.status_code == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"),
              "no token: 401 with WWW-Authenticate", (r.status_code, dict(r.headers)))
    print("all MCP client checks passed")


asyncio.run(main())
