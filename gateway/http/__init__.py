"""The HTTP front: aiohttp application, request parsing, handlers and the SSE relay."""
