"""A stand-in model server: OpenAI-compatible endpoints whose throughput is real, not a model.

It stands in for vLLM where no accelerator exists (the sandbox's real nodes, the demo): what the
operator and a client see is the same shape, with no weights behind it.

- `POST /v1/completions` and `POST /v1/chat/completions` answer with OpenAI's response shape.
  Each request holds one of `max_concurrency` slots (vLLM's `max_num_seqs`) for
  `first_token_s + tokens * per_token_s` (tokens: the request's `max_tokens`, default 16);
  requests beyond the slots wait in order. A replica therefore serves about
  `max_concurrency / service_time` requests per second and no more, which is what makes
  "capacity" measurable in answered requests.
- `GET /metrics` exports vLLM's metric names, labelled `model_name`:
  `vllm:num_requests_running`, `vllm:num_requests_waiting`, `vllm:request_success_total`
  (with `finished_reason`), `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`,
  `vllm:e2e_request_latency_seconds` and `vllm:time_to_first_token_seconds` histograms.
- `GET /health` (vLLM's readiness path) answers 503 until `warmup_s` has passed since start,
  the time a real server spends loading weights (longer on TPU and Neuron: set per variant).
  Completions are refused with 503 meanwhile too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DEFAULT_MAX_TOKENS = 16
MAX_TOKENS_LIMIT = 4096


@dataclass(frozen=True)
class ServerConfig:
    model: str = "stand-in"
    max_concurrency: int = 8
    first_token_s: float = 0.05
    per_token_s: float = 0.02
    warmup_s: float = 0.0

    def service_seconds(self, tokens: int) -> float:
        return self.first_token_s + tokens * self.per_token_s


class RequestError(Exception):
    """The client's mistake; answered with OpenAI's error shape."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind


class ModelServer:
    def __init__(self, config: ServerConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._started = clock()
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self._ids = itertools.count(1)
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["model_name"]
        self.running = Gauge("vllm:num_requests_running", "Requests being served.", labels,
                             registry=self.registry).labels(config.model)
        self.waiting = Gauge("vllm:num_requests_waiting", "Requests waiting for a slot.",
                             labels, registry=self.registry).labels(config.model)
        self.success = Counter("vllm:request_success", "Requests answered.",
                               [*labels, "finished_reason"], registry=self.registry)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prompt tokens read.", labels,
                                     registry=self.registry).labels(config.model)
        self.generation_tokens = Counter("vllm:generation_tokens", "Tokens generated.", labels,
                                         registry=self.registry).labels(config.model)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Request latency, queue "
                             "included.", labels, buckets=LATENCY_BUCKETS,
                             registry=self.registry).labels(config.model)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to the first token, "
                              "queue included.", labels, buckets=LATENCY_BUCKETS,
                              registry=self.registry).labels(config.model)

    def ready(self) -> bool:
        return self._clock() - self._started >= self.config.warmup_s

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.post("/v1/completions", self._completions),
            web.post("/v1/chat/completions", self._chat),
            web.get("/v1/models", self._models),
            web.get("/health", self._health),
            web.get("/metrics", self._metrics),
        ])
        return app

    async def _completions(self, request: web.Request) -> web.Response:
        return await self._answer(request, chat=False)

    async def _chat(self, request: web.Request) -> web.Response:
        return await self._answer(request, chat=True)

    async def _answer(self, request: web.Request, chat: bool) -> web.Response:
        try:
            if not self.ready():
                raise RequestError("the model is still loading", 503, "service_unavailable")
            body = await _json_body(request)
            prompt_tokens = _prompt_tokens(body, chat)
            tokens = _max_tokens(body)
            model = body.get("model", self.config.model)
            if model != self.config.model:
                raise RequestError(f"The model `{model}` does not exist.", 404, "NotFoundError")
        except RequestError as exc:
            return _error(exc)
        arrived = self._clock()
        self.waiting.inc()
        async with self._slots:
            self.waiting.dec()
            self.running.inc()
            try:
                await asyncio.sleep(self.config.first_token_s)
                self.ttft.observe(self._clock() - arrived)
                await asyncio.sleep(tokens * self.config.per_token_s)
            finally:
                self.running.dec()
        self.e2e.observe(self._clock() - arrived)
        self.success.labels(self.config.model, "length").inc()
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(tokens)
        return web.json_response(self._response(chat, prompt_tokens, tokens))

    def _response(self, chat: bool, prompt_tokens: int, tokens: int) -> dict[str, Any]:
        text = " ".join(["token"] * tokens)
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{next(self._ids)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                      "total_tokens": prompt_tokens + tokens},
        }

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.config.model, "object": "model", "owned_by": "inferpool-stand-in"}]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.ready() else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    return body


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """Words stand in for tokens: the count only feeds the token counters."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("`messages` must be a non-empty list")
        texts = [m.get("content", "") if isinstance(m, dict) else "" for m in messages]
    else:
        prompt = body.get("prompt")
        if not isinstance(prompt, str | list):
            raise RequestError("`prompt` must be a string or a list of strings")
        texts = [prompt] if isinstance(prompt, str) else [str(p) for p in prompt]
    return sum(len(str(text).split()) for text in texts)


def _max_tokens(body: dict[str, Any]) -> int:
    tokens = body.get("max_tokens", body.get("max_completion_tokens", DEFAULT_MAX_TOKENS))
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not (
            1 <= tokens <= MAX_TOKENS_LIMIT):
        raise RequestError(f"`max_tokens` must be an integer from 1 to {MAX_TOKENS_LIMIT}")
    return int(tokens)


def _error(exc: RequestError) -> web.Response:
    return web.json_response({"error": {"message": str(exc), "type": exc.kind, "param": None,
                                        "code": exc.status}}, status=exc.status)


def serve(config: ServerConfig, host: str, port: int) -> None:
    web.run_app(ModelServer(config).app(), host=host, port=port, print=None,
                access_log=None, handle_signals=True)
