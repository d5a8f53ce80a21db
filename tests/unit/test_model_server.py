"""The stand-in model server: OpenAI's shapes, vLLM's metric names, readiness after warm-up, and
a throughput that is really bounded by its slots (timed, on a real event loop and socket)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from inferpool.model_server.server import ModelServer, ServerConfig

Body = dict[str, Any]


def run(server: ModelServer, scenario: Callable[[TestClient[Any, Any]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(server.app())) as client:
            await scenario(client)
    asyncio.run(main())


async def metrics(client: TestClient[Any, Any]) -> dict[str, float]:
    text = await (await client.get("/metrics")).text()
    return {f"{sample.name}{sorted(sample.labels.items())}": sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_answers_completions_and_chat_in_openai_shape_and_counts_them() -> None:
    server = ModelServer(ServerConfig(model="llama", first_token_s=0, per_token_s=0))

    async def scenario(client: TestClient[Any, Any]) -> None:
        done = await client.post("/v1/completions",
                                 json={"model": "llama", "prompt": "a b c", "max_tokens": 5})
        body: Body = await done.json()
        assert done.status == 200
        assert body["object"] == "text_completion"
        assert body["choices"][0]["text"].count("token") == 5
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}

        done = await client.post("/v1/chat/completions",
                                 json={"messages": [{"role": "user", "content": "hi"}]})
        body = await done.json()
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["usage"]["completion_tokens"] == 16  # the default max_tokens

        seen = await metrics(client)
        assert seen["vllm:request_success_total[('finished_reason', 'length'), "
                    "('model_name', 'llama')]"] == 2
        assert seen["vllm:generation_tokens_total[('model_name', 'llama')]"] == 21
        assert seen["vllm:prompt_tokens_total[('model_name', 'llama')]"] == 4
        assert seen["vllm:e2e_request_latency_seconds_count[('model_name', 'llama')]"] == 2
        assert seen["vllm:time_to_first_token_seconds_count[('model_name', 'llama')]"] == 2
        assert seen["vllm:num_requests_running[('model_name', 'llama')]"] == 0

    run(server, scenario)


def test_not_ready_until_the_warm_up_has_passed() -> None:
    now = [0.0]
    server = ModelServer(ServerConfig(warmup_s=90, first_token_s=0, per_token_s=0),
                         clock=lambda: now[0])

    async def scenario(client: TestClient[Any, Any]) -> None:
        assert (await client.get("/health")).status == 503
        refused = await client.post("/v1/completions", json={"prompt": "x"})
        assert refused.status == 503
        assert "loading" in (await refused.json())["error"]["message"]
        now[0] = 90.0
        assert (await client.get("/health")).status == 200
        assert (await client.post("/v1/completions", json={"prompt": "x"})).status == 200

    run(server, scenario)


def test_throughput_is_bounded_by_the_slots_and_the_rest_wait() -> None:
    """Six requests of 0.2 s each: two slots take three rounds, six slots one."""
    def timed(slots: int) -> tuple[float, float]:
        server = ModelServer(ServerConfig(max_concurrency=slots, first_token_s=0.0,
                                          per_token_s=0.1))
        result: list[float] = []

        async def scenario(client: TestClient[Any, Any]) -> None:
            started = time.monotonic()
            requests = [asyncio.ensure_future(client.post(
                "/v1/completions", json={"prompt": "x", "max_tokens": 2})) for _ in range(6)]
            await asyncio.sleep(0.1)
            waiting = (await metrics(client))["vllm:num_requests_waiting[('model_name', "
                                              "'stand-in')]"]
            answers = await asyncio.gather(*requests)
            assert all(answer.status == 200 for answer in answers)
            result.extend([time.monotonic() - started, waiting])

        run(server, scenario)
        return result[0], result[1]

    two_seconds, two_waiting = timed(2)
    six_seconds, six_waiting = timed(6)
    print(f"6 requests of 0.2 s: {two_seconds:.2f} s on 2 slots, {six_seconds:.2f} s on 6")
    assert two_waiting == 4
    assert six_waiting == 0
    assert 0.58 <= two_seconds < 1.5
    assert 0.19 <= six_seconds < two_seconds / 2


def test_bad_requests_get_openai_errors() -> None:
    server = ModelServer(ServerConfig(model="llama"))

    async def scenario(client: TestClient[Any, Any]) -> None:
        for path, payload, status, words in (
            ("/v1/completions", {"model": "gpt", "prompt": "x"}, 404, "does not exist"),
            ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
            ("/v1/completions", {"max_tokens": 3}, 400, "prompt"),
            ("/v1/chat/completions", {"messages": []}, 400, "messages"),
            ("/v1/completions", [1, 2], 400, "JSON object"),
        ):
            answer = await client.post(path, json=payload)
            assert answer.status == status, (payload, await answer.text())
            assert words in (await answer.json())["error"]["message"]
        answer = await client.post("/v1/completions", data=b"{not json",
                                   headers={"Content-Type": "application/json"})
        assert answer.status == 400
        assert "not JSON" in (await answer.json())["error"]["message"]
        models = await (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["llama"]

    run(server, scenario)
