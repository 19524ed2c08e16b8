"""A minimal reader of the Prometheus text exposition format (enough for etcd's and GDTS's
/metrics): samples keyed by metric name and label set, and deltas between two scrapes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import aiohttp

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            label_text, _, value_text = rest.rpartition("}")
            labels = tuple(sorted(_LABEL.findall(label_text)))
        else:
            name, _, value_text = line.partition(" ")
            labels = ()
        value = value_text.split()[0]  # a timestamp may follow the value
        try:
            samples[(name.strip(), labels)] = float(value)
        except ValueError:
            continue
    return samples


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
