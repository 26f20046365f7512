"""A GraphQL server for tollgate's tests, built with strawberry-graphql (ASGI,
under uvicorn, over HTTPS).

Schema: query `issues: [Issue!]!` and `hello(name)`, query `deleted: [String!]!`
(the repositories deleted so far), and mutation `deleteRepo(name): String!`. Every
mutation that runs appends one JSON line {"mutation", "name"} to the record file,
so a test can prove that a refused mutation never ran. Served at /graphql: POST
JSON and GET `?query=` (queries only on GET, as strawberry does).

Usage: python3 server.py CONFIG.json; prints the port on stdout once listening.
CONFIG: {"cert", "key", "record" (path of the JSONL record), "port" (0: any)}.
"""

import json
import socket
import sys
import threading
import typing

import strawberry
import uvicorn
from strawberry.asgi import GraphQL

CONFIG = json.load(open(sys.argv[1]))
LOCK = threading.Lock()
DELETED: typing.List[str] = []


@strawberry.type
class Issue:
    number: int
    title: str


@strawberry.type
class Query:
    @strawberry.field
    def issues(self) -> typing.List[Issue]:
        return [Issue(number=1, title="first"), Issue(number=2, title="second")]

    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"

    @strawberry.field
    def deleted(self) -> typing.List[str]:
        with LOCK:
            return list(DELETED)


@strawberry.type
class Mutation:
    @strawberry.mutation
    def delete_repo(self, name: str) -> str:
        with LOCK:
            DELETED.append(name)
            with open(CONFIG["record"], "a") as f:
                f.write(json.dumps({"mutation": "deleteRepo", "name": name}) + "\n")
        return f"deleted {name}"


def main():
    open(CONFIG["record"], "a").close()
    schema = strawberry.Schema(query=Query, mutation=Mutation)
    app = GraphQL(schema, graphql_ide=None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(CONFIG.get("port", 0))))
    sock.listen(64)
    # The app answers on every path; the tests use /graphql.
    config = uvicorn.Config(
        app, ssl_certfile=CONFIG["cert"], ssl_keyfile=CONFIG["key"], log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    print(sock.getsockname()[1], flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
