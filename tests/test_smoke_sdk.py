from gateway.testing.upstream import FakeUpstream
import openai


def test_chat_through_gateway_reaches_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    reply = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    assert upstream.received[0].body["model"] == "fake-model"
    assert upstream.received[0].headers["Authorization"] == "Bearer sk-upstream-provider-key-0123456789"


def test_stream_through_gateway(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "w0 w1 w2 w3 w4 "
