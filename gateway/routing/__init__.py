"""Routing: which provider and model serve a public model name."""
