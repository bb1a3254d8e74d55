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
           "tier-slowlog-threshold": "tier-slowlog-threshold", "loglevel": "loglevel",
           "tiers-keyspace": "tiers-keyspace"}


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


# ---------------------------------------------------------------------------------------------
# README "Production on Azure": each tagged block (`<!-- test: NAME -->` before a fence) runs
# against loopback stand-ins; only Azure host names are replaced (and the test CAs added).

def production_blocks() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Production on Azure", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"<!-- test: (\S+) -->\n```\w*\n(.*?)```", section, re.S))


class AzureStandIns:
    """A TLS redis-server (an ACL user per token oid, the default user's password the access
    key), the token endpoint and Key Vault, Cosmos and Blob emulators, all on loopback."""
    OID = "3b0f6c8e-2d4a-4e51-9a7c-0c1d2e3f4a5b"

    def __init__(self, tmp: Path, make_proxy):
        import sys
        sys.path.insert(0, str(REPO))
        from Tests.emulators.harness import InProcessEmulators
        from tls_support import TLSRedis, make_pki
        self.tmp, self.make_proxy = tmp, make_proxy
        self.pki = make_pki(tmp / "pki")
        self.redis = TLSRedis(tmp, self.pki).start()
        self.emu = InProcessEmulators(tls=True).start()
        self.identity = self.emu.emus["identity"]
        self.identity.oid = self.OID
        admin = self.redis.admin()
        mint = self.identity._mint

        def mint_and_grant(resource: str):
            tok, exp = mint(resource)
            if resource.rstrip("/") == "https://redis.azure.com":
                admin.execute_command("ACL", "SETUSER", self.OID, "on", f">{tok}", "~*", "&*", "+@all")
            return tok, exp
        self.identity._mint = mint_and_grant
        admin.execute_command("ACL", "SETUSER", "default", "on", ">access-key-1", "~*", "&*", "+@all")
        self.redis.password = "access-key-1"
        self.identity.set_secret("redis-access-key", "access-key-1")
        from azure.cosmos import CosmosClient, PartitionKey
        from azure.storage.blob import BlobServiceClient
        CosmosClient(self.emu.cosmos_url, credential=self.emu.cosmos_key, connection_verify=self.emu.info["ca_cert"]) \
            .create_database_if_not_exists("memory") \
            .create_container_if_not_exists("state", partition_key=PartitionKey(path="/id"), default_ttl=-1)
        try:
            BlobServiceClient.from_connection_string(self.emu.blob_connection_string,
                                                     connection_verify=self.emu.info["ca_cert"]).create_container("memory")
        except Exception:  # noqa: BLE001 - already there
            pass
        self.conf = tmp / "tierproxy.conf"
        self.env = {k: "" for k in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT",
                                    "IDENTITY_HEADER", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "COSMOS_KEY",
                                    "AZURE_STORAGE_CONNECTION_STRING", "BLOB_ACCOUNT_URL", "COSMOS_ENDPOINT")}
        self.env["TIERPROXY_IMDS_ENDPOINT"] = self.emu.info["imds"]
        # Test-only settings: trust the test CAs (Azure's certificates chain to the system store).
        self.test_flags = {"upstream-tls-ca-cert-file": self.pki.ca_crt, "tier-tls-ca-cert-file": self.emu.info["ca_cert"],
                           "dir": str(tmp / "data")}
        self.proxy = None

    def loopback(self, text: str) -> str:
        hosts = {
            "mycache.redis.cache.windows.net:6380": f"127.0.0.1:{self.redis.port}",
            "myaccount.documents.azure.com": self.emu.cosmos_url.split("://")[1],
            "mystorage.blob.core.windows.net": self.emu.blob_account_url.split("://")[1],
            "https://myvault.vault.azure.net/": self.identity.url + "/",
            "keyvault://myvault/": f"keyvault://{self.identity.url.split('://')[1]}/",
            "/etc/tierproxy/tierproxy.conf": str(self.conf),
            "/run/secrets/": str(self.tmp) + "/",
        }
        for azure, local in hosts.items():
            text = text.replace(azure, local)
        return text

    def run(self, block: str):
        import os
        import signal
        import subprocess
        from harness import run_proxy_cli, wait_for
        import re
        for line in self.loopback(block).splitlines():
            words = shlex.split(line)
            if not words:
                continue
            if words[0] != "openssl":      # "$(cat FILE)" as the shell would expand it
                words = [re.sub(r"\$\(cat ([^)]+)\)", lambda m: Path(m.group(1)).read_text().strip(), w) for w in words]
            if words[0] == "export":
                k, _, v = words[1].partition("=")
                self.env[k] = v
            elif words[0] == "tierproxy" and words[1:2] in (["--check-config"], ["tiers"]):
                out = run_proxy_cli(words[1:] + [x for k, v in self.test_flags.items() for x in (f"--{k}", v)],
                                    timeout=60, env=self.env)
                text = out.stdout.decode() + out.stderr.decode()
                assert out.returncode == 0, f"{line}:\n{text}"
                assert "FAILED" not in text, f"{line}:\n{text}"
            elif words[0] == "tierproxy":
                args = words[1:]
                conf = Path(args.pop(0)) if args and not args[0].startswith("--") else None
                flags = dict(self.test_flags)
                flags.update(zip(args[::2], args[1::2]))
                flags = {k.lstrip("-"): v for k, v in flags.items()}
                if self.proxy:
                    self.proxy.stop()
                self.proxy = self.make_proxy(None, config_file=conf, flags=flags, env=self.env)
            elif words[0] == "redis-cli":
                assert words[1:3] == ["-p", "6380"], line
                reply = redis.Redis(port=self.proxy.port, socket_timeout=30).execute_command(*words[3:])
                if words[3].upper() == "TIERS":
                    assert all(b": ok" in x for x in reply), reply
            elif words[0] == "kill" and words[1] == "-HUP":
                before = self.proxy.output().count("Secrets resolved")
                self.proxy.signal(signal.SIGHUP)
                wait_for(lambda: self.proxy.output().count("Secrets resolved") > before, 30, desc="the reload")
            elif words[0] == "openssl":
                subprocess.run(line, shell=True, check=True, cwd=self.tmp, env={**os.environ})
            else:
                raise AssertionError(f"the test does not know how to run: {line}")

    def close(self):
        self.emu.stop()
        self.redis.cleanup()


@pytest.fixture
def azure(tmp_path, make_proxy):
    pytest.importorskip("azure.cosmos")
    s = AzureStandIns(tmp_path, make_proxy)
    yield s
    s.close()


def test_production_entra_steps_run(azure):
    blocks = production_blocks()
    azure.conf.write_text(azure.loopback(blocks["entra-conf"]))
    azure.run(blocks["entra-run"])
    # The proxy's connections are the identity's, with the token as password.
    users = {c.get("user") for c in azure.redis.admin().client_list()}
    assert AzureStandIns.OID in users, users
    assert "TLS, certificate verified" in azure.proxy.output()


def test_production_key_vault_steps_run(azure):
    blocks = production_blocks()
    azure.run(blocks["vault-run"])
    old = redis.Redis(port=azure.proxy.port, socket_timeout=30)
    old.client_setname("before-rotation")                 # pinned: authenticated with access-key-1
    # The rotation as the README tells it: the new key valid in Azure, then stored in the vault.
    admin = azure.redis.admin()
    admin.execute_command("ACL", "SETUSER", "default", ">access-key-2")
    azure.identity.set_secret("redis-access-key", "access-key-2")
    azure.run(blocks["vault-rotate"])
    admin.execute_command("ACL", "SETUSER", "default", "<access-key-1")
    azure.redis.password = "access-key-2"
    new = redis.Redis(port=azure.proxy.port, socket_timeout=30)
    assert new.client_setname("after-rotation") and new.ping()   # a new connection, the new key
    assert old.ping()                                            # the old one keeps working


def test_production_encryption_rotation_steps_run(azure, make_redis):
    """Enabled once `tier-encryption-key` exists (the encryption-at-rest branch)."""
    from harness import run_proxy_cli
    if "tier-encryption-key" not in run_proxy_cli(["--print-config"]).stdout.decode():
        pytest.skip("tier-encryption-key / tier-encryption-old-keys not merged yet")
    import base64
    import os
    (azure.tmp / "tier-key-1").write_text(base64.b64encode(os.urandom(32)).decode())
    srv = make_redis()
    azure.test_flags = {"dir": str(azure.tmp / "data"), "upstream": srv.url}
    first = azure.make_proxy(srv.url, flags={"dir": str(azure.tmp / "data"),
                                             "tier-encryption-key": (azure.tmp / "tier-key-1").read_text()})
    first.client().set("written-with-key-1", "v1")
    first.stop()
    srv.client().delete("written-with-key-1")                  # only the lower tiers hold it now
    azure.run(production_blocks()["encryption-rotate"])
    assert azure.proxy.client().get("written-with-key-1") == b"v1"
