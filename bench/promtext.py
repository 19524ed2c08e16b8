"""Prometheus samples from etcd's and GDTS's /metrics (parsed by prometheus-client), keyed by
sample name and label set, and deltas between two scrapes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        resp.raise_for_status()
        return parse(await resp.text())


def delta(before: Samples, after: Samples, name: str) -> dict[Labels, float]:
    """Per label set, after - before for counter ``name`` (a missing 'before' counts as 0)."""
    return {
        labels: value - before.get((metric, labels), 0.0)
        for (metric, labels), value in after.items()
        if metric == name
    }


def by_label(values: Mapping[Labels, float], label: str) -> dict[str, float]:
    """Sum the values per value of one label, dropping zero totals."""
    out: dict[str, float] = {}
    for labels, value in values.items():
        key = dict(labels).get(label, "")
        out[key] = out.get(key, 0.0) + value
    return {k: v for k, v in sorted(out.items()) if v}


def total(values: Iterable[float]) -> float:
    return float(sum(values))
