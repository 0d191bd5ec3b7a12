"""Runtime control gateway: an OpenAI-compatible async proxy that governs every model call."""

__version__ = "0.3.1"
