"""An OpenAI-shaped inference server on uvicorn, the ASGI server vLLM and SGLang's OpenAI front ends run on, for
the worker's upstream tests (test/support/uvicorn.ts). Answers are a function of the request, so a test can tell
that the exact prompt arrived and the exact answer came back:

- POST /v1/chat/completions: the answer's text is `n` tokens, token i being `t<i>:<d> ` where d is the first 8 hex
  digits of SHA-256 over the last message's content (UTF-8) and n is `max_tokens` (default 4); `stream: true` sends
  them as `chat.completion.chunk` SSE events, one ASGI body message each (uvicorn frames them chunked), with a usage
  event when `stream_options.include_usage` is true, then `[DONE]`. A last message `status:<code>` is answered
  with that status and a JSON error instead.
- GET /v1/models: the one model, `uv-model`.
- GET /stats: the requests served so far and the distinct client connections they came on (not OpenAI's; read
  directly by the test, never through gm).

Run: python3 openai_asgi.py <h11|httptools> <keep-alive seconds>; prints `listening on http://127.0.0.1:<port>`.
"""

import asyncio
import hashlib
import json
import socket
import sys

MODEL = "uv-model"
connections = set()
served = {"requests": 0}


async def read_body(receive):
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def send_json(send, status, obj):
    data = json.dumps(obj).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def chat(scope, receive, send):
    body = await read_body(receive)
    connections.add(tuple(scope["client"]))
    served["requests"] += 1
    request = json.loads(body)
    prompt = request["messages"][-1]["content"]
    if prompt.startswith("status:"):
        await send_json(send, int(prompt[len("status:"):]), {"error": {"message": "asked for", "type": "test"}})
        return
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    n = int(request.get("max_tokens") or 4)
    tokens = [f"t{i}:{digest} " for i in range(n)]
    usage = {"prompt_tokens": len(body), "completion_tokens": n, "total_tokens": len(body) + n}
    if not request.get("stream"):
        message = {"role": "assistant", "content": "".join(tokens)}
        choice = {"index": 0, "message": message, "finish_reason": "length"}
        answer = {"id": "chatcmpl-uv", "object": "chat.completion", "created": 0, "model": MODEL, "choices": [choice], "usage": usage}
        await send_json(send, 200, answer)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})

    def event(obj):
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    for i, t in enumerate(tokens):
        finish = "length" if i == n - 1 else None
        chunk = {"id": "chatcmpl-uv", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                 "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": finish}]}
        await send({"type": "http.response.body", "body": event(chunk), "more_body": True})
        await asyncio.sleep(0.001)
    if (request.get("stream_options") or {}).get("include_usage"):
        last = {"id": "chatcmpl-uv", "object": "chat.completion.chunk", "created": 0, "model": MODEL, "choices": [], "usage": usage}
        await send({"type": "http.response.body", "body": event(last), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "POST" and path == "/v1/chat/completions":
        await chat(scope, receive, send)
    elif method == "GET" and path == "/v1/models":
        await send_json(send, 200, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]})
    elif method == "GET" and path == "/stats":
        await send_json(send, 200, {"requests": served["requests"], "connections": len(connections)})
    else:
        await send_json(send, 404, {"error": {"message": "not found", "type": "test"}})


if __name__ == "__main__":
    import uvicorn

    http, keep_alive = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, http=http, loop="asyncio", lifespan="off", timeout_keep_alive=keep_alive, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
