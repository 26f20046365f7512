"""An MCP server for tollgate's tests, built from the official MCP Python SDK.

Serves the streamable HTTP transport at /mcp over HTTPS (uvicorn), with three
tools: add(a, b), echo(text) and delete_everything() (the dangerous one).
Every tool that runs appends one JSON line {"tool", "args"} to the calls file, so
a test can prove that a refused call never ran.

Usage: python3 server.py CONFIG.json; prints the port on stdout once listening.
CONFIG: {"cert", "key", "calls" (path of the JSONL record), "port" (0: any),
"json_response" (true: JSON answers; false: SSE answers), "stateless" (bool)}.
"""

import json
import socket
import sys
import threading

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

CONFIG = json.load(open(sys.argv[1]))
LOCK = threading.Lock()

mcp = MCPServer("tollgate-test")


def record(tool, args):
    with LOCK, open(CONFIG["calls"], "a") as f:
        f.write(json.dumps({"tool": tool, "args": args}) + "\n")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    record("add", {"a": a, "b": b})
    return a + b


@mcp.tool()
def echo(text: str) -> str:
    """Returns the text it was given."""
    record("echo", {"text": text})
    return text


@mcp.tool()
def delete_everything() -> str:
    """Deletes everything (the tool a policy must keep away from an agent)."""
    record("delete_everything", {})
    return "everything deleted"


def main():
    open(CONFIG["calls"], "a").close()
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=bool(CONFIG.get("json_response", False)),
        stateless_http=bool(CONFIG.get("stateless", False)),
        # The Host header names mcp.test (tollgate forwards the sandbox's).
        transport_security=TransportSecuritySettings(
            allowed_hosts=["mcp.test:*", "127.0.0.1:*"], allowed_origins=[]
        ),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(CONFIG.get("port", 0))))
    sock.listen(64)
    config = uvicorn.Config(
        app,
        ssl_certfile=CONFIG["cert"],
        ssl_keyfile=CONFIG["key"],
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    print(sock.getsockname()[1], flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
