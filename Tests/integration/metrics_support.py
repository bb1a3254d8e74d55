"""Reading the proxy's metrics endpoint in tests: HTTP GET on loopback and a Prometheus text
parser (enough of the format for exact lookups by name and labels)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Optional

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:port/path; HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, frozenset(labels.items())): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"unparseable sample line: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(samples: dict, name: str, **labels: str) -> Optional[float]:
    return samples.get((name, frozenset(labels.items())))


def scrape(port: int) -> dict:
    status, body = http_get(port, "/metrics")
    assert status == 200, (status, body)
    return parse_metrics(body)
