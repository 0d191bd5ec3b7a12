"""Configuration: `gateway.yaml` (or the embedded default) parsed into frozen value objects."""

from gateway.config.loader import load_config, parse_config, with_overrides
from gateway.config.model import GatewayConfig, ModelRoute, ProviderConfig, Target
from gateway.config.reader import ConfigError

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "ModelRoute",
    "ProviderConfig",
    "Target",
    "load_config",
    "parse_config",
    "with_overrides",
]
