"""The deployment files, proven without a container engine: `docker-compose config -q` parses
both compose files; the compose topology runs as local processes (a real redis-server with the
compose file's own command, the project's Cosmos and Blob emulators in place of the two images,
tierproxy with exactly the compose file's environment, service names mapped to loopback) and a
client session goes through it; each service's health check passes; and the Dockerfile's runtime
stage installs a Debian package for every shared library the (statically linked Swift) binary needs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

from harness import REPO, free_port, proxy_binary, tail, wait_for
from metrics_support import http_get

sys.path.insert(0, str(REPO))
from Tests.emulators.harness import EmulatorProcess  # noqa: E402

pytestmark = pytest.mark.proxy_process

COMPOSE = REPO / "docker-compose.yml"
EMBEDDED = REPO / "docker-compose.embedded.yml"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", [COMPOSE, EMBEDDED], ids=["compose", "embedded"])
def test_docker_compose_config_parses(path):
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is installed by scripts/deps.sh (Debian's docker-compose package)"
    r = subprocess.run([tool, "-f", str(path), "config", "-q"], capture_output=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr.decode()


def test_compose_shape():
    c = load(COMPOSE)
    services = c["services"]
    assert set(services) == {"redis", "azurite", "cosmos", "tierproxy"}
    assert "allkeys-lru" in services["redis"]["command"] and "--maxmemory" in services["redis"]["command"]
    # The current Azurite image is one binary, /usr/local/bin/azurite (no azurite-blob).
    assert services["azurite"]["command"][0] == "azurite" and "10000" in services["azurite"]["command"]
    for name, s in services.items():
        assert "healthcheck" in s, f"{name} has no health check"
    deps = services["tierproxy"]["depends_on"]
    assert set(deps) == {"redis", "azurite", "cosmos"}
    assert all(d["condition"] == "service_healthy" for d in deps.values())
    assert services["tierproxy"]["build"] == "." and "6380:6380" in services["tierproxy"]["ports"]
    assert {"redis-data", "tierproxy-data"} <= set(c["volumes"])
    env = services["tierproxy"]["environment"]
    assert {"REDIS_URL", "COSMOS_ACCOUNT_URI", "COSMOS_KEY", "COSMOS_DATABASE", "COSMOS_CONTAINER",
            "AZURE_STORAGE_CONNECTION_STRING"} <= set(env)
    embedded = load(EMBEDDED)["services"]
    assert set(embedded) == {"redis", "tierproxy"}
    assert not any(k.startswith(("COSMOS_", "AZURE_", "BLOB_")) for k in embedded["tierproxy"]["environment"])


def test_compose_environment_is_only_variables_the_proxy_reads():
    """A misspelt variable would be ignored silently: each one is a directive's TIERPROXY_ name
    (conf/tierproxy.conf) or a name the sources read (the seed library's REDIS_URL, COSMOS_…)."""
    conf = (REPO / "conf" / "tierproxy.conf").read_text()
    directives = set(re.findall(r"^#? ?([a-z][a-z-]*) ", conf, re.M))
    sources = "".join(f.read_text() for f in (REPO / "Sources").rglob("*.swift"))
    for path in (COMPOSE, EMBEDDED):
        for key in load(path)["services"]["tierproxy"]["environment"]:
            if key.startswith("TIERPROXY_"):
                name = key[len("TIERPROXY_"):].lower().replace("_", "-")
                assert name in directives, f"{path.name}: {key} is no directive's variable"
            else:
                assert f'"{key}"' in sources, f"{path.name}: {key} is read nowhere in Sources"


def health_argv(test: list, ports: dict[int, int]) -> list[str]:
    """A compose health check as a local command, the compose ports mapped to the local ones."""
    kind, *rest = test
    if kind == "CMD-SHELL":
        command = rest[0]
        for theirs, ours in ports.items():
            command = re.sub(rf"\b{theirs}\b", str(ours), command)
        return ["sh", "-c", command]
    assert kind == "CMD", test
    return [re.sub(rf"\b({'|'.join(map(str, ports))})\b", lambda m: str(ports[int(m.group(1))]), a) for a in rest]


def test_compose_topology_as_local_processes(make_redis, tmp_path):
    c = load(COMPOSE)
    services = c["services"]
    # Named volumes become directories here.
    def local_path(target: str) -> str:
        d = tmp_path / target.strip("/").replace("/", "_")
        d.mkdir(exist_ok=True)
        return str(d)
    # redis: the compose file's own command, with its volume and a free port.
    redis_args = services["redis"]["command"][1:]
    mounts = {v.split(":")[1]: local_path(v.split(":")[1]) for v in services["redis"]["volumes"]}
    redis_args = [mounts.get(a, a) for a in redis_args]
    srv = make_redis(args=tuple(redis_args))
    hot = srv.client()
    assert hot.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    assert int(hot.config_get("maxmemory")["maxmemory"]) == 64 * 1024 * 1024
    with EmulatorProcess(ports={"identity": -1}) as emu:
        cosmos_port = int(emu.info["cosmos"].rsplit(":", 1)[1])
        blob_port = int(emu.info["blob"].split("://", 1)[1].split("/")[0].rsplit(":", 1)[1])
        proxy_port, metrics_port = free_port(), free_port()
        hosts = {"redis:6379": f"127.0.0.1:{srv.port}", "cosmos:8081": f"127.0.0.1:{cosmos_port}",
                 "azurite:10000": f"127.0.0.1:{blob_port}"}
        env = {}
        for k, v in services["tierproxy"]["environment"].items():
            v = str(v)
            for theirs, ours in hosts.items():
                v = v.replace(theirs, ours)
            env[k] = v
        env["TIERPROXY_BIND"] = "127.0.0.1"                # loopback only in tests
        env["TIERPROXY_PORT"] = str(proxy_port)
        env["TIERPROXY_METRICS_PORT"] = str(metrics_port)
        env["TIERPROXY_METRICS_BIND"] = "127.0.0.1"
        env["TIERPROXY_DIR"] = local_path(env["TIERPROXY_DIR"])
        env["TIERPROXY_HEALTH_PROBE_INTERVAL"] = "200"
        out = tmp_path / "tierproxy.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("TIERPROXY_", "COSMOS_", "AZURE_", "BLOB_", "REDIS_"))}
        proc = subprocess.Popen([proxy_binary(), str(REPO / "conf" / "tierproxy.conf")], env={**clean, **env},
                                stdout=open(out, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=tmp_path, start_new_session=True)
        try:
            wait_for(lambda: proc.poll() is not None or http_get(metrics_port, "/readyz")[0] == 200, 20,
                     desc="tierproxy ready with the compose environment", ignore=(OSError,))
            assert proc.poll() is None, tail(out)
            log = out.read_text()
            assert "warm cosmos" in log.lower() or "cosmos" in log, log
            c = redis.Redis(port=proxy_port, protocol=2)
            assert c.set("compose:1", "hello") is True
            assert c.get("compose:1") == b"hello"
            assert hot.delete("compose:1") == 1                # hot loses it
            assert c.get("compose:1") == b"hello"              # from Cosmos (the emulator), promoted
            assert c.execute_command("TIERS", "WHERE", "compose:1") == [b"hot", b"warm"]
            assert emu.stats("cosmos")["ops"].get("ReadDocument", 0) >= 1
            assert c.info("tiers")["warm_tier"].startswith("cosmos")
            # Every service's health check, as the compose file states it, against the local stand-in.
            ports = {6379: srv.port, 10000: blob_port, 8081: cosmos_port, 9180: metrics_port, 6380: proxy_port}
            for name, s in services.items():
                argv = health_argv(s["healthcheck"]["test"], ports)
                r = subprocess.run(argv, capture_output=True, timeout=30)
                assert r.returncode == 0, f"{name} health check {shlex.join(argv)}: {r.stdout!r} {r.stderr!r}"
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def runtime_packages(dockerfile: str) -> set[str]:
    """Packages the last stage's `apt-get install` lines name."""
    stage = dockerfile.split("\nFROM ")[-1]
    text = stage.replace("\\\n", " ")
    packages = set()
    for line in text.splitlines():
        if "apt-get install" in line:
            words = line.split("apt-get install", 1)[1].split("&&")[0].split()
            packages |= {w for w in words if not w.startswith("-")}
    return packages


def package_of(path: str) -> str:
    r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if r.returncode != 0:   # /lib is a symlink to /usr/lib on bookworm: dpkg knows one spelling
        alt = path.replace("/lib/", "/usr/lib/", 1) if path.startswith("/lib/") else path.replace("/usr/lib/", "/lib/", 1)
        r = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True)
    assert r.returncode == 0, f"no Debian package provides {path}: {r.stderr}"
    return r.stdout.split(":", 1)[0].split(",")[0].strip()


def build_stage_context(dockerfile: str, into: Path) -> list[str]:
    """The files the build stage's `COPY` lines put under its WORKDIR, copied into `into` (mtimes
    kept, so a second build is incremental); returns the RUN lines that follow them."""
    stage = dockerfile.split("\nFROM ")[1].replace("\\\n", " ")
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    runs = []
    for line in stage.splitlines():
        copy = re.match(r"^COPY (?!--)(\S+) (\S+)$", line)
        if copy:
            src, dst = REPO / copy.group(1), copy.group(2)
            assert src.exists(), f"the build stage copies {copy.group(1)}, which is not in the repository"
            if dst.startswith("/"):
                continue                                   # an artifact next to the binary, not a source
            target = into / (src.name if dst in (".", "./") else dst)
            if src.is_dir():
                shutil.copytree(src, target, copy_function=shutil.copy2,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, target)
        elif line.startswith("RUN swift build"):
            runs.append(line)
    return runs


def test_dockerfile_runtime_stage_has_every_library():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM debian:bookworm-slim" in dockerfile and re.search(r"^FROM swift:\S+ AS build", dockerfile, re.M)
    for line in ("USER tierproxy", "EXPOSE 6380", "STOPSIGNAL SIGTERM", "HEALTHCHECK"):
        assert line in dockerfile, line
    assert "http://127.0.0.1:9180/healthz" in dockerfile
    # The binary as the Dockerfile builds it: from exactly what the build stage copies (a manifest
    # whose targets' directories are missing does not load), the Swift runtime linked statically.
    context = REPO / ".build-docker-context"
    runs = build_stage_context(dockerfile, context)
    assert len(runs) == 1 and "--static-swift-stdlib" in runs[0] and "--product tierproxy" in runs[0], runs
    build = REPO / ".build-static"
    r = subprocess.run(["swift", "build", "-c", "release", "--product", "tierproxy", "--static-swift-stdlib",
                        "--scratch-path", str(build)], cwd=context, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    binary = build / "release" / "tierproxy"
    needed = re.findall(r"NEEDED\s+(\S+)", subprocess.run(["objdump", "-p", str(binary)], capture_output=True,
                                                           text=True, check=True).stdout)
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "not found" not in ldd, ldd
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    listed = runtime_packages(dockerfile)
    assert listed, "no apt-get install in the runtime stage"
    missing = []
    for lib in needed:
        if lib.startswith("ld-linux"):
            continue
        assert lib in paths, f"ldd did not resolve {lib}"
        assert "/opt/swift" not in paths[lib] and "swift" not in lib, f"{lib} is a toolchain library: {paths[lib]}"
        pkg = package_of(paths[lib])
        if pkg not in listed:
            missing.append(f"{lib} ({pkg})")
    assert not missing, f"the runtime stage installs no package for: {', '.join(missing)}"
    # And the image starts: the same binary answers --version.
    assert subprocess.run([str(binary), "--version"], capture_output=True, timeout=10).returncode == 0
