"""Prometheus metrics through prometheus-client: a registry per process part, and its text
exposition (format 0.0.4) for the ``/metrics`` routes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

# The text format every scraper reads (what GDTS has always served).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def new_registry() -> CollectorRegistry:
    """A registry of our own (not the library's global one: two in one process, as in the
    tests, must not collide). Counters get no ``_created`` series: GDTS never served them."""
    disable_created_metrics()
    return CollectorRegistry(auto_describe=True)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
