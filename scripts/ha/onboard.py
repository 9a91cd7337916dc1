"""Onboard a fresh Home Assistant and print a long-lived access token.

Creates the owner through the onboarding API, trades the auth code for an
access token, then asks the WebSocket API for a ten-year token.
Usage: python onboard.py http://127.0.0.1:8123
An https URL is checked against the CA file in HA_TLS_CA when it is set.
"""
import asyncio
import os
import ssl
import sys

import aiohttp

BASE = sys.argv[1].rstrip("/")
CLIENT_ID = BASE + "/"


async def main() -> None:
    ca = os.environ.get("HA_TLS_CA")
    tls = ssl.create_default_context(cafile=ca) if ca else None
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as http:
        r = await http.post(f"{BASE}/api/onboarding/users", json={
            "client_id": CLIENT_ID, "name": "Owner", "username": "owner",
            "password": "owner-password", "language": "en"})
        r.raise_for_status()
        code = (await r.json())["auth_code"]
        r = await http.post(f"{BASE}/auth/token", data={
            "grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID})
        r.raise_for_status()
        access = (await r.json())["access_token"]
        async with http.ws_connect(BASE.replace("http", "ws", 1) + "/api/websocket") as ws:
            await ws.receive_json()
            await ws.send_json({"type": "auth", "access_token": access})
            assert (await ws.receive_json())["type"] == "auth_ok"
            await ws.send_json({"id": 1, "type": "auth/long_lived_access_token",
                                "client_name": "ha-fetchers-tests", "lifespan": 3650})
            reply = await ws.receive_json()
            assert reply.get("success"), reply
            print(reply["result"])


asyncio.run(main())
