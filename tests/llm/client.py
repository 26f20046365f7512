"""Drives the official `openai` and `anthropic` Python clients, as an agent in
the sandbox would, through tollgate.

Usage:
  python3 client.py [options] openai chat (json|stream|stream-no-usage) N
  python3 client.py [options] openai responses (json|stream) N
  python3 client.py [options] anthropic messages (json|stream) N
Options:
  --port PORT       the API's port (https://api.openai.test:PORT/v1,
                    https://api.anthropic.test:PORT)
  --proxy URL       the proxy (http://task:token@127.0.0.1:PORT); none: direct
  --ca FILE         the only CA trusted (tollgate's, or the double's when direct)
  --direct          connect every *.test name to 127.0.0.1 (no proxy, for
                    trying the clients against tests/llm/server.py alone)
  --model NAME      default gpt-4.1 / claude-sonnet-4-5
  --timeout SECS    per call (default 60)

Makes N calls in a row, max_retries=0, and prints one JSON line per call:
{"call": i, "ok": true, "model", "input_tokens", "output_tokens", "text"} or
{"call": i, "ok": false, "status": HTTP status (0: no response), "body": the
error body (JSON when it is), "headers": {"x-tollgate-reason", "retry-after"},
"error": the exception's class}. It goes on after a failed call. The API keys
are the placeholders __OPENAI_KEY__ and __ANTHROPIC_KEY__: tollgate swaps them.
"""

import argparse
import json
import socket
import ssl
import sys

import anthropic
import openai


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--proxy")
    p.add_argument("--ca", required=True)
    p.add_argument("--direct", action="store_true")
    p.add_argument("--model")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("provider", choices=["openai", "anthropic"])
    p.add_argument("api", choices=["chat", "responses", "messages"])
    p.add_argument("mode", choices=["json", "stream", "stream-no-usage"])
    p.add_argument("n", type=int)
    return p.parse_args()


def connect_test_names_to_loopback():
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".test"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = resolve


def http_client(sdk, args):
    # Each SDK's own HTTP client class (they sit on httpx2 now, and reject a
    # plain httpx.Client). It takes the proxy's credentials from its URL
    # (Proxy-Authorization: Basic) and trusts only the given CA, not the
    # system store; trust_env=False keeps HTTPS_PROXY and friends out.
    verify = ssl.create_default_context(cafile=args.ca)
    return sdk.DefaultHttpxClient(proxy=args.proxy, verify=verify, timeout=args.timeout, trust_env=False)


def openai_call(client, args):
    model = args.model or "gpt-4.1"
    messages = [{"role": "user", "content": "Say something about budgets."}]
    if args.api == "chat":
        if args.mode == "json":
            r = client.chat.completions.create(model=model, messages=messages)
            return r.model, r.usage.prompt_tokens, r.usage.completion_tokens, r.choices[0].message.content
        extra = {"stream_options": {"include_usage": True}} if args.mode == "stream" else {}
        stream = client.chat.completions.create(model=model, messages=messages, stream=True, **extra)
        text, usage, seen = "", None, None
        for chunk in stream:
            seen = chunk.model
            for choice in chunk.choices:
                text += choice.delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        if usage is None:
            return seen, None, None, text
        return seen, usage.prompt_tokens, usage.completion_tokens, text
    if args.api == "responses":
        if args.mode == "json":
            r = client.responses.create(model=model, input="Say something about budgets.")
            return r.model, r.usage.input_tokens, r.usage.output_tokens, r.output_text
        if args.mode != "stream":
            raise SystemExit("responses: json or stream")
        text, final = "", None
        for event in client.responses.create(model=model, input="Say something about budgets.", stream=True):
            if event.type == "response.output_text.delta":
                text += event.delta
            elif event.type == "response.completed":
                final = event.response
        if final is None:
            raise RuntimeError("the stream ended without response.completed")
        return final.model, final.usage.input_tokens, final.usage.output_tokens, text
    raise SystemExit("openai: chat or responses")


def anthropic_call(client, args):
    if args.api != "messages" or args.mode == "stream-no-usage":
        raise SystemExit("anthropic: messages json|stream")
    model = args.model or "claude-sonnet-4-5"
    params = {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say something about budgets."}],
    }
    if args.mode == "json":
        r = client.messages.create(**params)
        return r.model, r.usage.input_tokens, r.usage.output_tokens, "".join(b.text for b in r.content)
    # The SDK's stream helper accumulates the events into the final message.
    with client.messages.stream(**params) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return final.model, final.usage.input_tokens, final.usage.output_tokens, text


def failure(i, exc):
    out = {"call": i, "ok": False, "status": 0, "error": type(exc).__name__}
    response = getattr(exc, "response", None)
    if response is not None and hasattr(response, "status_code"):
        out["status"] = response.status_code
        out["headers"] = {
            "x-tollgate-reason": response.headers.get("x-tollgate-reason"),
            "retry-after": response.headers.get("retry-after"),
        }
        try:
            out["body"] = response.json()
        except ValueError:
            out["body"] = response.text
    else:
        out["body"] = str(exc)
    return out


def main():
    args = parse_args()
    if args.direct:
        connect_test_names_to_loopback()
    if args.provider == "openai":
        client = openai.OpenAI(
            api_key="__OPENAI_KEY__",
            base_url="https://api.openai.test:%d/v1" % args.port,
            http_client=http_client(openai, args),
            max_retries=0,
        )
        call = openai_call
    else:
        client = anthropic.Anthropic(
            api_key="__ANTHROPIC_KEY__",
            base_url="https://api.anthropic.test:%d" % args.port,
            http_client=http_client(anthropic, args),
            max_retries=0,
        )
        call = anthropic_call
    for i in range(1, args.n + 1):
        try:
            model, inp, out, text = call(client, args)
            line = {"call": i, "ok": True, "model": model, "input_tokens": inp, "output_tokens": out, "text": text}
        except (openai.APIError, anthropic.APIError) as exc:
            line = failure(i, exc)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    sys.exit(main())
