"""The MCP SDK's own streamable-HTTP client, as a sandboxed agent runs it.

Goes through tollgate by HTTPS_PROXY (httpx2 reads it from the environment) and
trusts only the CA in the file named by MCP_CA (tollgate's, or the server's own
when run without a proxy).

Usage: python3 client.py URL COMMAND [ARGS_JSON]; prints one JSON object:
  list                      -> {"ok": true, "tools": [names]}
  call {"name", "arguments"} -> {"ok": true, "is_error", "content": [texts], "structured"}
  batch {"calls": [{"name", "arguments"}]}
                            -> {"status", "body"}: the SDK's initialize handshake
                               over plain HTTP, then one hand-made JSON-RPC batch
                               POST with the session headers it set.
  raw {"body", "content_type"}
                            -> {"status", "body"}: one POST of the given text as is
                               (after an initialize, with its session headers).
Failures print {"ok": false, "error": TEXT, "status": the first HTTP error status
seen, or null}. Every answer also carries "http": [[method, status], ...], the
exchanges in order (the SDK's GET stream and DELETE included).
"""

import asyncio
import json
import os
import ssl
import sys

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

PROTOCOL = "2025-06-18"


def tls():
    return ssl.create_default_context(cafile=os.environ["MCP_CA"])


# Every HTTP exchange as [method, status]: the SDK turns an HTTP error on a POST
# into a JSON-RPC error ("Server returned an error response") without the status.
EXCHANGES = []


async def note(response):
    EXCHANGES.append([response.request.method, response.status_code])


def http_client():
    # trust_env (the default) makes httpx2 honour HTTPS_PROXY.
    return httpx2.AsyncClient(
        verify=tls(), timeout=httpx2.Timeout(30.0, read=60.0), event_hooks={"response": [note]}
    )


def status_of(exc):
    """The HTTP status inside an exception (or an exception group), if any."""
    seen = [exc]
    while seen:
        e = seen.pop()
        response = getattr(e, "response", None)
        if response is not None and getattr(response, "status_code", None):
            return response.status_code
        seen.extend(getattr(e, "exceptions", ()) or ())
        for nested in (e.__cause__, e.__context__):
            if nested is not None and nested not in seen:
                seen.append(nested)
    return None


def text_of(exc):
    parts = [f"{type(exc).__name__}: {exc}"]
    for e in getattr(exc, "exceptions", ()) or ():
        parts.append(text_of(e))
    return " | ".join(parts)


async def with_session(url, work):
    async with http_client() as client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=30) as session:
                await session.initialize()
                return await work(session)


async def list_tools(url, _args):
    async def work(session):
        result = await session.list_tools()
        return {"ok": True, "tools": [t.name for t in result.tools]}

    return await with_session(url, work)


async def call_tool(url, args):
    async def work(session):
        result = await session.call_tool(args["name"], args.get("arguments") or {})
        texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
        return {
            "ok": True,
            "is_error": bool(result.is_error if hasattr(result, "is_error") else result.isError),
            "content": texts,
            "structured": getattr(result, "structured_content", None)
            if hasattr(result, "structured_content")
            else getattr(result, "structuredContent", None),
        }

    return await with_session(url, work)


async def handshake(client, url):
    """initialize + notifications/initialized by hand; returns the session headers."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "tollgate-test", "version": "1"},
        },
    }
    r = await client.post(url, json=init, headers=headers)
    if r.status_code != 200:
        raise RuntimeError(f"initialize answered {r.status_code}: {r.text}")
    session = dict(headers)
    sid = r.headers.get("mcp-session-id")
    if sid:
        session["mcp-session-id"] = sid
    session["mcp-protocol-version"] = PROTOCOL
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    r = await client.post(url, json=note, headers=session)
    if r.status_code not in (200, 202):
        raise RuntimeError(f"notifications/initialized answered {r.status_code}: {r.text}")
    return session


async def batch(url, args):
    async with http_client() as client:
        session = await handshake(client, url)
        calls = [
            {
                "jsonrpc": "2.0",
                "id": 10 + i,
                "method": "tools/call",
                "params": {"name": c["name"], "arguments": c.get("arguments") or {}},
            }
            for i, c in enumerate(args["calls"])
        ]
        r = await client.post(url, content=json.dumps(calls), headers=session)
        return {"status": r.status_code, "body": r.text}


async def raw(url, args):
    async with http_client() as client:
        session = await handshake(client, url)
        headers = dict(session)
        headers["Content-Type"] = args.get("content_type", "application/json")
        r = await client.post(url, content=args["body"].encode(), headers=headers)
        return {"status": r.status_code, "body": r.text}


COMMANDS = {"list": list_tools, "call": call_tool, "batch": batch, "raw": raw}


def main():
    url, command = sys.argv[1], sys.argv[2]
    args = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    try:
        out = asyncio.run(COMMANDS[command](url, args))
    except BaseException as exc:  # noqa: BLE001 - the test wants every failure as data
        if isinstance(exc, KeyboardInterrupt):
            raise
        refused = [status for _, status in EXCHANGES if status >= 400]
        out = {"ok": False, "error": text_of(exc), "status": refused[0] if refused else status_of(exc)}
    out["http"] = EXCHANGES
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
