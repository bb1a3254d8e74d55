"""The operator docs stay true: every INFO field, metric, log line and command a runbook names
exists (against a running proxy and the sources), and the README's configuration reference table
lists every directive of conf/tierproxy.conf with its env var, default and whether TIERS CONFIG
SET changes it at runtime."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import redis

from harness import REPO, free_port
from metrics_support import http_get

pytestmark = pytest.mark.proxy_process

RUNBOOKS = sorted((REPO / "docs" / "runbooks").glob("*.md"))
RUNTIME = {"rule": "rules", "tier-timeout": "tier-timeout", "negative-cache-ms": "negative-cache-ms",
           "tier-slowlog-threshold": "tier-slowlog-threshold", "loglevel": "loglevel"}


def named(kind: str) -> dict[str, set[str]]:
    """{runbook: items} from its `- Kind: `a`, `b`` lines."""
    out = {}
    for page in RUNBOOKS:
        for line in page.read_text().splitlines():
            if line.startswith(f"- {kind}:"):
                out.setdefault(page.name, set()).update(re.findall(r"`([^`]+)`", line))
    return out


def swift_log_patterns() -> list[re.Pattern]:
    """Each string literal of the sources as a regex, interpolations matching anything."""
    patterns = []
    for f in (REPO / "Sources").rglob("*.swift"):
        for lit in re.findall(r'"((?:[^"\\\n]|\\.)*)"', f.read_text()):
            if len(lit) < 6:
                continue
            parts = re.split(r"\\\((?:[^()]|\([^()]*\))*\)", lit)
            if max(len(re.sub(r"[^A-Za-z]", "", part)) for part in parts) < 5:
                continue            # mostly interpolation: it would match any line
            patterns.append(re.compile("^" + ".+?".join(re.escape(p) for p in parts) + ".*$", re.S))
    return patterns


def test_every_runbook_names_something_of_each_kind():
    assert len(RUNBOOKS) >= 9, [p.name for p in RUNBOOKS]      # the index and eight situations
    for kind in ("INFO", "Metrics", "Logs", "Commands"):
        pages = named(kind)
        assert {p.name for p in RUNBOOKS if p.name != "README.md"} <= set(pages), f"pages without {kind}"


def test_runbook_names_exist(make_redis, make_proxy, tmp_path):
    srv = make_redis()
    mport = free_port()
    prx = make_proxy(srv.url, flags={"dir": str(tmp_path), "metrics-port": mport})
    c = redis.Redis(port=prx.port, protocol=2)
    info_fields = set(c.info("everything"))
    status, body = http_get(mport, "/metrics")
    families = set(re.findall(r"^# TYPE (\S+) ", body, re.M))
    missing = []
    for page, items in named("INFO").items():
        missing += [f"{page}: INFO {x}" for x in items if x not in info_fields]
    for page, items in named("Metrics").items():
        missing += [f"{page}: metric {x}" for x in items if x not in families]
    patterns = swift_log_patterns()
    for page, items in named("Logs").items():
        missing += [f"{page}: log line {x!r}" for x in items if not any(p.match(x) for p in patterns)]
    for page, items in named("Commands").items():
        for command in items:
            try:
                c.execute_command(*shlex.split(command))
            except redis.ResponseError as e:
                missing.append(f"{page}: command {command!r}: {e}")
    # The steps' prose names things too: every backticked metric, INFO field and TIERS/INFO command.
    for page in RUNBOOKS:
        for item in re.findall(r"`([^`\n]+)`", page.read_text()):
            if re.fullmatch(r"tierproxy_[a-z0-9_]+", item):
                if item not in families:
                    missing.append(f"{page.name}: metric {item} (in the text)")
            elif re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", item):
                if item not in info_fields:
                    missing.append(f"{page.name}: INFO {item} (in the text)")
            elif re.match(r"(TIERS|INFO) ", item) and "…" not in item:
                try:
                    c.execute_command(*shlex.split(item))
                except redis.ResponseError as e:
                    missing.append(f"{page.name}: command {item!r} (in the text): {e}")
    assert not missing, "\n".join(missing)


def conf_directives() -> dict[str, str]:
    """{directive: default} from conf/tierproxy.conf (repeated lines joined by '; ')."""
    out: dict[str, list[str]] = {}
    for line in (REPO / "conf" / "tierproxy.conf").read_text().splitlines():
        m = re.match(r"^([a-z][a-z-]*) (.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
        elif line.startswith("# rule PATTERN"):
            out["rule"] = [""]
        elif line.startswith("# user NAME"):
            out["user"] = [""]
    return {k: "; ".join(v) for k, v in out.items()}


def readme_table() -> dict[str, tuple[str, str, str]]:
    text = (REPO / "README.md").read_text()
    section = text.split("### Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1].strip("`"), cells[2].strip("`"), cells[3])
    return rows


def test_readme_configuration_reference_matches_the_conf_file():
    conf, table = conf_directives(), readme_table()
    assert set(table) == set(conf), f"missing from README: {set(conf) - set(table)}; extra: {set(table) - set(conf)}"
    for name, default in conf.items():
        env, shown, runtime = table[name]
        assert env == "TIERPROXY_" + name.upper().replace("-", "_"), name
        assert shown == (default or "(none)"), f"{name}: README says {shown!r}, conf says {default!r}"
        want = f"yes (`TIERS CONFIG SET {RUNTIME[name]}`)" if name in RUNTIME else "no"
        assert runtime == want, f"{name}: runtime column {runtime!r}, expected {want!r}"
