"""The fake OpenAI-compatible server itself (shared with the search tests): both endpoints,
its failure knobs, and 64+ requests held at once."""

import asyncio

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAIServer


def client(server, key="k"):
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_chat_and_completions_endpoints():
    def responder(path, body):
        return ["one", "two"] if path.endswith("/completions") and body.get("n") == 2 else "hi"

    with FakeOpenAIServer(responder=responder) as server:

        async def go():
            c = client(server)
            chat = await c.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
            text = await c.completions.create(model="m", prompt="p", n=2, logprobs=1)
            await c.close()
            return chat, text

        chat, text = asyncio.run(go())
    assert chat.choices[0].message.content == "hi" and chat.usage.total_tokens > 0
    assert [c.text for c in text.choices] == ["one", "two"]
    assert text.choices[0].logprobs.token_logprobs == [-0.1]
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/v1/completions"]
    assert server.requests[1].body["prompt"] == "p"


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("400", openai.BadRequestError),
        ("429", openai.RateLimitError),
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("disconnect", openai.APIConnectionError),
        ("malformed", ValueError),
    ],
)
def test_scripted_failures_then_normal_answers(kind, error):
    with FakeOpenAIServer() as server:
        server.fail_next(kind)

        async def go():
            c = client(server)
            with pytest.raises(error):
                await c.completions.create(model="m", prompt="p")
            ok = await c.completions.create(model="m", prompt="p")
            await c.close()
            return ok

        assert asyncio.run(go()).choices[0].text == " fake completion"
    assert server.outcomes[kind] == 1 and server.outcomes["ok"] == 1


def test_rate_limit_carries_retry_after_and_key_is_checked():
    with FakeOpenAIServer(api_key="right", retry_after_s=1.5) as server:
        server.fail_next("429")

        async def go():
            c = client(server, "right")
            with pytest.raises(openai.RateLimitError) as info:
                await c.completions.create(model="m", prompt="p")
            with pytest.raises(openai.AuthenticationError):
                await client(server, "wrong").completions.create(model="m", prompt="p")
            await c.close()
            return info.value.response.headers["retry-after"]

        assert asyncio.run(go()) == "1.5"


def test_holds_64_plus_requests_at_once():
    with FakeOpenAIServer(latency_s=0.3, record=False) as server:

        async def go():
            c = client(server)
            calls = [c.completions.create(model="m", prompt=str(i)) for i in range(80)]
            out = await asyncio.gather(*calls)
            await c.close()
            return out

        assert len(asyncio.run(go())) == 80
    assert server.max_in_flight == 80 and server.requests == []
