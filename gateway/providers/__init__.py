"""Provider adapters behind one small protocol (`base.Provider`), and the factory that builds them."""

from __future__ import annotations

from gateway.config.model import ProviderConfig
from gateway.providers.base import Provider, StreamEvent, UpstreamCall, UpstreamStream
from gateway.providers.mock import MockProvider
from gateway.providers.openai import OpenAIProvider
from gateway.upstream import UpstreamClient


def build_provider(config: ProviderConfig, client: UpstreamClient) -> Provider:
    if config.kind == "mock":
        return MockProvider(config)
    return OpenAIProvider(config, client)


__all__ = ["Provider", "StreamEvent", "UpstreamCall", "UpstreamStream", "build_provider"]
