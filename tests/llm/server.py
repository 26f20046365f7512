"""A local HTTPS test double for the OpenAI and Anthropic HTTP APIs.

No LLM can run in the tests, so this server answers in the providers' real
wire formats, JSON and server-sent events, with realistic `usage` blocks and a
fixed token count per call, so a test can compute exact budgets. The official
`openai` and `anthropic` Python clients (tests/llm/client.py) parse what it
sends.

Usage: python3 server.py CONFIG.json; prints the port on stdout once listening.
CONFIG: {"cert", "key" (PEM files), "bind" (default 127.0.0.1), "port" (0: any),
"input_tokens" (default 11), "output_tokens" (default 7),
"models": {"requested model": "model the response names"} (default: the
requested one), "api_keys": {"openai": KEY, "anthropic": KEY} (if given, a
call whose `Authorization: Bearer` or `x-api-key` is not the provider's key
gets the provider's 401 error, so a placeholder that was not swapped fails)}.

Routes:
- POST /v1/chat/completions (OpenAI): JSON, or with "stream": true SSE chunks
  ending with `data: [DONE]`; with "stream_options": {"include_usage": true}
  a last chunk with "choices": [] carries the usage, without it none does.
- POST /v1/responses (OpenAI Responses): JSON, or SSE events ending with
  `response.completed` (its `response.usage`).
- POST /v1/messages (Anthropic): JSON, or SSE events `message_start`
  (`message.usage`), `content_block_*`, `message_delta` (cumulative
  `usage.output_tokens`), `message_stop`.
- POST /upload: reads the body (Content-Length or chunked) and answers with
  the byte count; a body cut short is still recorded with what arrived.
- GET /_hits: every request above so far, in order: {"method", "path",
  "model", "stream", "include_usage", "authorization", "x_api_key",
  "body_bytes", "complete"}.
"""

import json
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG = json.load(open(sys.argv[1]))
INPUT = int(CONFIG.get("input_tokens", 11))
OUTPUT = int(CONFIG.get("output_tokens", 7))
MODELS = CONFIG.get("models", {})
WORDS = ["Budgets", " stop", " a", " runaway", " agent", " at", " 2am", "."]
LOCK = threading.Lock()
HITS = []


def response_model(requested):
    return MODELS.get(requested, requested)


class BodyCut(Exception):
    """The client's request body ended before its declared length."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))

    # ---- plumbing -------------------------------------------------------

    def record(self, **fields):
        hit = {
            "method": self.command,
            "path": self.path,
            "authorization": self.headers.get("Authorization"),
            "x_api_key": self.headers.get("x-api-key"),
            "body_bytes": 0,
            "complete": False,
        }
        hit.update(fields)
        with LOCK:
            HITS.append(hit)
        return hit

    def read_body(self, hit):
        """Reads the request body into memory, counting bytes in `hit` as they arrive."""
        chunks = []

        def got(data):
            chunks.append(data)
            with LOCK:
                hit["body_bytes"] += len(data)

        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise BodyCut()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, 65536))
                    if not data:
                        raise BodyCut()
                    got(data)
                    left -= len(data)
                self.rfile.readline(8)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                data = self.rfile.read1(min(left, 65536))
                if not data:
                    raise BodyCut()
                got(data)
                left -= len(data)
        with LOCK:
            hit["complete"] = True
        return b"".join(chunks)

    def send_json(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def start_stream(self, extra=None):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def event(self, name, obj):
        text = ""
        if name is not None:
            text += "event: %s\n" % name
        text += "data: %s\n\n" % (obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":")))
        self.chunk(text.encode())

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # ---- routes ---------------------------------------------------------

    def do_GET(self):
        if self.path == "/_hits":
            with LOCK:
                snapshot = json.loads(json.dumps(HITS))
            return self.send_json(200, snapshot)
        self.send_json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})

    def do_POST(self):
        hit = self.record()
        try:
            raw = self.read_body(hit)
        except BodyCut:
            self.close_connection = True
            return
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True
            return
        if self.path == "/upload":
            return self.send_json(200, {"received": len(raw)})
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
        stream = bool(req.get("stream"))
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        with LOCK:
            hit.update(model=req.get("model"), stream=stream, include_usage=include_usage)
        route = {
            "/v1/chat/completions": self.chat,
            "/v1/responses": self.openai_responses,
            "/v1/messages": self.messages,
        }.get(self.path.split("?")[0])
        if route is None:
            return self.send_json(404, {"error": {"message": "no such route", "type": "invalid_request_error"}})
        provider = "anthropic" if self.path.startswith("/v1/messages") else "openai"
        want = CONFIG.get("api_keys", {}).get(provider)
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if want is not None and want not in (bearer, self.headers.get("x-api-key")):
            with LOCK:
                hit["unauthorized"] = True
            if provider == "anthropic":
                error = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            else:
                error = {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                   "param": None, "code": "invalid_api_key"}}
            return self.send_json(401, error)
        route(req, stream, include_usage)

    # OpenAI chat completions --------------------------------------------

    def chat(self, req, stream, include_usage):
        model = response_model(req.get("model", "gpt-4.1"))
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        usage = {
            "prompt_tokens": INPUT,
            "completion_tokens": OUTPUT,
            "total_tokens": INPUT + OUTPUT,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        headers = {"x-request-id": "req_" + uuid.uuid4().hex, "openai-processing-ms": "42"}
        if not stream:
            return self.send_json(
                200,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None, "annotations": []},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": "fp_b3f1157249",
                },
                headers,
            )
        self.start_stream(headers)

        def chunk(delta, finish=None, choices=True):
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_b3f1157249",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
            }
            if include_usage:
                obj["usage"] = None
            return obj

        self.event(None, chunk({"role": "assistant", "content": "", "refusal": None}))
        for word in WORDS:
            self.event(None, chunk({"content": word}))
        self.event(None, chunk({}, "stop"))
        if include_usage:
            last = chunk({}, choices=False)
            last["usage"] = usage
            self.event(None, last)
        self.event(None, "[DONE]")
        self.end_stream()

    # OpenAI Responses ---------------------------------------------------

    def openai_responses(self, req, stream, include_usage):
        model = response_model(req.get("model", "gpt-4.1"))
        rid = "resp_" + uuid.uuid4().hex
        mid = "msg_" + uuid.uuid4().hex
        text = "".join(WORDS)
        headers = {"x-request-id": "req_" + uuid.uuid4().hex}

        def response(status, output, usage):
            return {
                "id": rid,
                "object": "response",
                "created_at": int(time.time()),
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": None,
                "instructions": req.get("instructions"),
                "max_output_tokens": None,
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default",
                "store": True,
                "temperature": 1.0,
                "text": {"format": {"type": "text"}},
                "tool_choice": "auto",
                "tools": [],
                "top_p": 1.0,
                "truncation": "disabled",
                "usage": usage,
                "user": None,
                "metadata": {},
            }

        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"id": mid, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        usage = {
            "input_tokens": INPUT,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": OUTPUT,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT + OUTPUT,
        }
        if not stream:
            return self.send_json(200, response("completed", [item], usage), headers)
        self.start_stream(headers)
        seq = iter(range(1 << 30))

        def ev(name, **fields):
            self.event(name, dict({"type": name, "sequence_number": next(seq)}, **fields))

        ev("response.created", response=response("in_progress", [], None))
        ev("response.in_progress", response=response("in_progress", [], None))
        ev("response.output_item.added", output_index=0,
           item={"id": mid, "type": "message", "status": "in_progress", "role": "assistant", "content": []})
        ev("response.content_part.added", item_id=mid, output_index=0, content_index=0,
           part={"type": "output_text", "text": "", "annotations": []})
        for word in WORDS:
            ev("response.output_text.delta", item_id=mid, output_index=0, content_index=0, delta=word, logprobs=[])
        ev("response.output_text.done", item_id=mid, output_index=0, content_index=0, text=text, logprobs=[])
        ev("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=part)
        ev("response.output_item.done", output_index=0, item=item)
        ev("response.completed", response=response("completed", [item], usage))
        self.end_stream()

    # Anthropic messages -------------------------------------------------

    def messages(self, req, stream, include_usage):
        model = response_model(req.get("model", "claude-sonnet-4-5"))
        mid = "msg_" + uuid.uuid4().hex[:24]
        headers = {"request-id": "req_" + uuid.uuid4().hex[:24], "anthropic-organization-id": "org-test"}
        usage = {
            "input_tokens": INPUT,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": OUTPUT,
            "service_tier": "standard",
        }
        message = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "".join(WORDS)}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not stream:
            return self.send_json(200, message, headers)
        self.start_stream(headers)
        # As the API does: message_start reports the input and the first
        # output token; message_delta's output_tokens is the cumulative count.
        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        self.event("message_start", {"type": "message_start", "message": start})
        self.event("content_block_start",
                   {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        self.event("ping", {"type": "ping"})
        for word in WORDS:
            self.event("content_block_delta",
                       {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}})
        self.event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self.event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": OUTPUT},
        })
        self.event("message_stop", {"type": "message_stop"})
        self.end_stream()


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        # The TLS handshake runs in the connection's own thread, on its first
        # read, so one stalled client cannot hold up accept().
        sock, addr = self.socket.accept()
        return CONTEXT.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


def main():
    CONTEXT.load_cert_chain(CONFIG["cert"], CONFIG["key"])
    CONTEXT.set_alpn_protocols(["http/1.1"])
    server = TlsServer((CONFIG.get("bind", "127.0.0.1"), int(CONFIG.get("port", 0))), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
