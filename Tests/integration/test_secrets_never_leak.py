"""No secret ever leaks: every secret-bearing setting in `SECRETS` is used for real (the proxy
authenticates with it) at `loglevel debug`, the proxy is exercised (start, traffic through every
tier, SIGHUP, INFO of every section, every TIERS subcommand, /metrics and /healthz/memory,
--print-config, --check-config, `tiers check`, the upstream failing, then a crash: SIGSEGV, and
SIGABRT after a restart, each reported by Swift's crash catcher), and every output is searched for
every secret. The `tls-acl` scenario has clients over TLS with an encrypted key (its passphrase),
auth-mode proxy (requirepass, a user's >password) and the lower tiers encrypted (current and old
keys).

To cover a new secret, add one `Row` to `SECRETS`: the scenario it belongs to (a proxy
configuration; add a scenario if it needs its own), and `use`, which puts the secret where the
proxy reads it (flags, env) and prepares the other side to accept it (a Redis ACL user, a vault
secret). Secrets the proxy obtains at run time (tokens) are rows with `collect` instead.
"""

from __future__ import annotations

import base64
import os
import signal
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest
import redis

from harness import RawConn, free_port, run_proxy_cli, wait_for
from tls_support import _openssl, make_pki

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from Tests.emulators.harness import InProcessEmulators  # noqa: E402

pytestmark = pytest.mark.proxy_process

OID = "0c5e1b7a-61f4-4f0e-9c55-7ac1d0e5e0a1"
# The directive that trusts the emulators' certificate (another branch renames it
# tier-tls-ca-cert-file; one place to change).
TIER_CA_FLAG = "tier-tls-ca-cert-file"


@dataclass
class Ctx:
    """What a row's `use` works with, and what it adds to."""
    srv: object
    emu: InProcessEmulators
    flags: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    tmp: Path = Path(".")
    check: bytes = b""                             # TIERS CHECK's lines
    client_auth: Optional[tuple] = None            # (user, password) clients also AUTH with
    proxy_auth: Optional[tuple] = None             # auth-mode proxy: (user, password) every connection AUTHs with
    conf: list = field(default_factory=list)       # conf file lines (requirepass, user)
    tls: Optional[tuple] = None                    # (tls-port, CA file): clients also come over TLS

    @property
    def admin(self) -> redis.Redis:
        return self.srv.admin()

    @property
    def identity(self):
        return self.emu.emus["identity"]


@dataclass
class Row:
    setting: str                                   # where the secret is configured (directive / env var)
    scenario: str                                  # which proxy configuration uses it
    secret: str = ""                               # the literal secret, if it is one
    use: Callable[[Ctx, str], None] = lambda c, s: None
    collect: Optional[Callable[[Ctx], list[str]]] = None   # secrets the proxy obtained at run time


def acl_user(c: Ctx, user: str, password: str):
    c.admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")


def url_password(c: Ctx, s: str):
    acl_user(c, "app", s)
    c.flags["upstream"] = f"redis://app:{s}@127.0.0.1:{c.srv.port}"
    c.client_auth = ("app", s)


def keyvault_password(c: Ctx, s: str):
    acl_user(c, "app", s)
    c.identity.set_secret("redis-password", s)
    c.flags["upstream"] = f"redis://app:@127.0.0.1:{c.srv.port}"
    c.env.update(KEY_VAULT_URI=c.identity.url + "/", REDIS_PASSWORD_SECRET_NAME="redis-password")


def client_secret(c: Ctx, s: str):
    c.identity.client_secret = s
    c.env.update(AZURE_TENANT_ID=c.identity.tenant, AZURE_CLIENT_ID=c.identity.client_id,
                 AZURE_CLIENT_SECRET=s, AZURE_AUTHORITY_HOST=c.identity.url + "/")


def cosmos_key(c: Ctx, s: str):
    c.env.update(COSMOS_ENDPOINT=c.emu.cosmos_url, COSMOS_KEY=c.emu.cosmos_key)


def cosmos_key_in_vault(c: Ctx, s: str):
    c.identity.set_secret("cosmos-key", c.emu.cosmos_key)
    c.env.update(COSMOS_ENDPOINT=c.emu.cosmos_url, COSMOS_KEY=f"keyvault://{c.identity.url.split('://')[1]}/cosmos-key")


def blob_connection_string(c: Ctx, s: str):
    c.env.update(AZURE_STORAGE_CONNECTION_STRING=c.emu.blob_connection_string)


def blob_sas(c: Ctx, s: str):
    c.env.update(BLOB_ACCOUNT_URL=f"{c.emu.blob_account_url}?{s}")


def imds(c: Ctx, s: str):
    c.env["TIERPROXY_IMDS_ENDPOINT"] = c.emu.info["imds"]
    c.env.update(COSMOS_ENDPOINT=c.emu.cosmos_url, BLOB_ACCOUNT_URL=c.emu.blob_account_url)


def entra_upstream(c: Ctx, s: str):
    imds(c, s)
    c.flags["upstream-auth"] = "entra"


def proxy_upstream(c: Ctx, s: str):
    """auth-mode proxy: the proxy's own upstream user (clients never send it)."""
    acl_user(c, "tp", s)
    c.flags["upstream"] = f"redis://tp:{s}@127.0.0.1:{c.srv.port}"


def tls_key_pass(c: Ctx, s: str):
    """Client TLS with an encrypted key: the passphrase opens it at start and at every SIGHUP reload."""
    pki = make_pki(c.tmp / "pki")
    _openssl("pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{s}", "-out", "encrypted.key", cwd=pki.dir)
    port = free_port()
    c.flags.update({"tls-port": str(port), "tls-cert-file": pki.server_crt, "tls-key-file": str(pki.dir / "encrypted.key"),
                    "tls-key-file-pass": s, "tls-auth-clients": "no"})
    c.tls = (port, pki.ca_crt)


def requirepass(c: Ctx, s: str):
    c.conf += ["auth-mode proxy", f"requirepass {s}"]
    c.proxy_auth = ("default", s)


def proxy_user(c: Ctx, s: str):
    c.conf.append(f"user carol on >{s} ~* &* +@all")
    c.client_auth = ("carol", s)


def tier_key(directive: str):
    def use(c: Ctx, s: str):
        c.flags[directive] = s
    return use


def issued_tokens(c: Ctx) -> list[str]:
    return list(c.identity.recorded)


def make_sas(emu) -> str:
    from datetime import datetime, timedelta, timezone
    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas
    return generate_account_sas(emu.blob_account, emu.blob_key, ResourceTypes(service=True, container=True, object=True),
                                AccountSasPermissions(read=True, write=True, delete=True, list=True, create=True, add=True),
                                expiry=datetime.now(timezone.utc) + timedelta(hours=1))


# (setting, scenario, secret, how the proxy gets it). The shared key values come from the
# emulators (they verify signatures with them), so their rows read them there.
SECRETS: list[Row] = [
    Row("upstream (password in the redis:// URL)", "literal", "Url-Pw-3f9a61c2e7", url_password),
    Row("COSMOS_KEY (Cosmos master key)", "literal", "<emulator cosmos key>", cosmos_key),
    Row("AZURE_STORAGE_CONNECTION_STRING (account key)", "literal", "<emulator connection string>", blob_connection_string),
    Row("KEY_VAULT_URI + REDIS_PASSWORD_SECRET_NAME (upstream password)", "vault", "Vault-Pw-88c0d2b1a4", keyvault_password),
    Row("AZURE_CLIENT_SECRET (identity client secret)", "vault", "Client-Secret-51b7e0c9d2", client_secret),
    Row("COSMOS_KEY=keyvault://… (Cosmos key from the vault)", "vault", "<emulator cosmos key>", cosmos_key_in_vault),
    Row("BLOB_ACCOUNT_URL?SAS (Blob SAS token)", "vault", "<made sas>", blob_sas),
    Row("Key Vault / Cosmos / Storage Entra ID tokens", "vault", collect=issued_tokens),
    Row("upstream-auth entra (Redis, Cosmos, Storage Entra ID tokens)", "entra", use=entra_upstream,
        collect=issued_tokens),
    Row("upstream (auth-mode proxy's own upstream password)", "tls-acl", "Proxy-Up-Pw-6d2c9e01b4", proxy_upstream),
    Row("tls-key-file-pass (encrypted client-TLS key)", "tls-acl", "Tls-Key-Pass-4e7b1a9c3d", tls_key_pass),
    Row("requirepass (auth-mode proxy)", "tls-acl", "Require-Pw-2b8e5f0a7c", requirepass),
    Row("user … >password (auth-mode proxy)", "tls-acl", "User-Pw-9a3c7e1d5b", proxy_user),
    Row("tier-encryption-key", "tls-acl", base64.b64encode(b"tier-key-current-0123456789abcd!").decode(),
        tier_key("tier-encryption-key")),
    Row("tier-encryption-old-keys", "tls-acl", base64.b64encode(b"tier-key-older-0123456789abcdef!").decode(),
        tier_key("tier-encryption-old-keys")),
]


def secret_value(row: Row, emu) -> str:
    return {"<emulator cosmos key>": emu.cosmos_key, "<emulator connection string>": emu.blob_connection_string,
            "<made sas>": make_sas(emu)}.get(row.secret, row.secret)


def fragments(secret: str) -> list[str]:
    """The secret, and for a connection string or SAS the parts that are secret on their own."""
    out = [secret]
    for part in secret.split(";") + secret.split("&"):
        k, _, v = part.partition("=")
        if k.lower() in ("accountkey", "sig", "sharedaccesssignature") and len(v) >= 8:
            out.append(v)
    return out


def exercise(prx, c: Ctx) -> list[str]:
    """Everything a user can make the proxy say; returns the replies and pages as text."""
    said: list[str] = []
    login = dict(username=c.proxy_auth[0], password=c.proxy_auth[1]) if c.proxy_auth else {}
    r = prx.client(socket_timeout=30, **login)
    for i in range(20):
        r.set(f"leak:{i}", f"v{i}")
        assert r.get(f"leak:{i}") == f"v{i}".encode()
    r.delete("leak:0")
    if c.tls:                                      # and the same over TLS, through the tiers too
        tls_port, ca = c.tls
        t = redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=ca, ssl_check_hostname=False,
                        socket_timeout=30, **login)
        assert t.set("leak:tls", "v") and t.get("leak:1") == b"v1"
        said.append(repr(t.info("everything")))
        assert t.execute_command("TIERS", "WHERE", "leak:1")
    prx.signal(signal.SIGHUP)
    wait_for(lambda: "Received SIGHUP" in prx.output(), 20, desc="the SIGHUP")
    if c.tls:
        wait_for(lambda: "TLS certificates for clients reloaded" in prx.output(), 20, desc="the TLS reload")
    if c.client_auth:                              # clients' own AUTH and HELLO … AUTH (passed through or the proxy's)
        with RawConn(prx.port, timeout=60) as conn:
            said.append(repr(conn.cmd("AUTH", *c.client_auth, timeout=60)))
            said.append(repr(conn.cmd("AUTH", c.client_auth[0], "wrong-" + c.client_auth[1], timeout=60)))
            said.append(repr(conn.cmd("HELLO", "3", "AUTH", *c.client_auth, timeout=60)))
            said.append(repr(conn.cmd("GET", "leak:1", timeout=60)))
    with RawConn(prx.port, timeout=60) as conn:
        if c.proxy_auth:
            assert conn.cmd("AUTH", *c.proxy_auth, timeout=60).v == b"OK"
        for section in ("everything", "all", "server", "clients", "tiers", "keyspace", "stats"):
            said.append(repr(conn.cmd("INFO", section, timeout=60)))
        for sub in (("HELP",), ("WHERE", "leak:1"), ("CHECK",), ("STATS",), ("RULES",), ("CONFIG", "GET", "*"),
                    ("CONFIG", "HELP"), ("RESETSTAT",), ("NOSUCH",)):
            reply = conn.cmd("TIERS", *sub, timeout=60)
            said.append(repr(reply))
            if sub == ("CHECK",):
                c.check = b"\n".join(x.v for x in reply.v)
        said.append(repr(conn.cmd("CONFIG", "GET", "*", timeout=60)))
        said.append(repr(conn.cmd("CLIENT", "LIST", timeout=60)))
    for path in ("/metrics", "/healthz", "/healthz/memory"):
        with urllib.request.urlopen(f"http://127.0.0.1:{prx.flags['metrics-port']}{path}", timeout=30) as page:
            said.append(page.read().decode(errors="replace"))
    flag_args = [x for k, v in c.flags.items() if k not in ("metrics-port",) for x in (f"--{k}", str(v))]
    if prx.config_file:
        flag_args.insert(0, str(prx.config_file))
    for cli in (["--print-config", *flag_args], ["--check-config", *flag_args], ["tiers", "check", *flag_args]):
        out = run_proxy_cli(cli, timeout=60, env=c.env)
        said.append(out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace"))
    # The upstream fails: the error paths log too.
    c.srv.kill()
    with RawConn(prx.port, timeout=60) as conn:
        if c.proxy_auth:
            said.append(repr(conn.cmd("AUTH", *c.proxy_auth, timeout=60)))
        said.append(repr(conn.cmd("GET", "leak:1", timeout=60)))
        said.append(repr(conn.cmd("SELECT", "1", timeout=60)))
    crash(prx)
    return said


def crash(prx):
    """Crash output: a segmentation fault, and again an abort after a restart, each reported by
    Swift's crash catcher (its report goes to the proxy's stdout, which `output()` reads)."""
    for sig, name in ((signal.SIGSEGV, "Signal 11"), (signal.SIGABRT, "Signal 6")):
        if sig == signal.SIGABRT:
            prx.kill()
            prx.start(wait="port")
        mark = len(prx.output())
        prx.signal(sig)
        # The report ends with "Backtrace took"; the process may outlive a signal it did not
        # raise itself (the catcher returns and nothing faults again), or die on it.
        wait_for(lambda: "Backtrace took" in prx.output()[mark:] or not prx.alive(), 60, desc=f"the {name} report")
        report = prx.output()[mark:]
        assert name in report and "Thread 0" in report, report[-2000:]
        # No register dumps: they show the bytes each register points at (CrashReport.swift).
        assert "Registers:" not in report and "\nrdi 0x" not in report, report[-2000:]
    prx.kill()


SCENARIOS = sorted({row.scenario for row in SECRETS})


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_in_any_output(scenario, make_redis, make_proxy, tmp_path):
    with InProcessEmulators(tls=True) as emu:
        identity = emu.emus["identity"]
        identity.oid = OID
        identity.recorded = []
        mint = identity._mint
        srv = make_redis()
        admin = srv.admin()

        def recording_mint(resource: str):
            tok, exp = mint(resource)
            identity.recorded.append(tok)
            if resource.rstrip("/") == "https://redis.azure.com":       # Azure's side: the token is the password
                admin.execute_command("ACL", "SETUSER", OID, "on", f">{tok}", "~*", "&*", "+@all")
            return tok, exp
        identity._mint = recording_mint
        for name in ("memory",):
            from azure.cosmos import CosmosClient, PartitionKey
            CosmosClient(emu.cosmos_url, credential=emu.cosmos_key, connection_verify=emu.info["ca_cert"]) \
                .create_database_if_not_exists(name) \
                .create_container_if_not_exists("state", partition_key=PartitionKey(path="/id"), default_ttl=-1)
        admin.execute_command("ACL", "SETUSER", "default", "on", ">Admin-Pw-0d1e2f", "~*", "&*", "+@all")
        srv.password = "Admin-Pw-0d1e2f"
        ctx = Ctx(srv, emu, tmp=tmp_path, flags={"dir": str(tmp_path), "loglevel": "debug", TIER_CA_FLAG: emu.info["ca_cert"],
                                   "tiers-create": "yes", "metrics-port": str(free_port())},
                  env={k: "" for k in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT",
                                       "IDENTITY_HEADER", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "COSMOS_KEY",
                                       "AZURE_STORAGE_CONNECTION_STRING", "BLOB_ACCOUNT_URL", "COSMOS_ENDPOINT")})
        rows = [r for r in SECRETS if r.scenario == scenario]
        literal: dict[str, str] = {}
        for row in rows:
            value = secret_value(row, emu)
            row.use(ctx, value)
            if value:
                literal[row.setting] = value
        upstream = ctx.flags.pop("upstream", srv.url)
        conf = None
        if ctx.conf:
            conf = tmp_path / "secrets.conf"
            conf.write_text("\n".join(ctx.conf) + "\n")
        prx = make_proxy(upstream, flags=ctx.flags, env=ctx.env, config_file=conf)
        ctx.flags["upstream"] = upstream
        said = exercise(prx, ctx)
        outputs = {"proxy log": prx.output(), "replies and pages": "\n".join(said)}
        secrets = dict(literal)
        for row in rows:
            if row.collect:
                for i, tok in enumerate(row.collect(ctx)):
                    secrets[f"{row.setting} #{i}"] = tok
        assert len(secrets) >= len(rows), secrets.keys()
        assert any(row.collect for row in rows) <= bool(identity.recorded), "no token was issued"
        leaks = [f"{setting} in {where}" for setting, value in secrets.items() for frag in fragments(value)
                 for where, text in outputs.items() if frag in text]
        assert leaks == [], leaks
        # The proxy did use them: hot, warm and cold answered with these credentials.
        log = outputs["proxy log"]
        assert "Upstream check ok" in log and "WRONGPASS" not in log, log
        assert ctx.check.count(b": ok") == 2, ctx.check


# Settings the proxy refuses, each with a secret inside: the error says what is wrong, never
# the secret. (where: "file" = a conf file line, "flag" = --directive, "env" = variable).
BAD_SETTINGS: list[tuple[str, str, str, str]] = [
    ("file", "upstream", "redis://app:Bad-Pw-File-1a2b@127.0.0.1:notaport", "Bad-Pw-File-1a2b"),
    ("flag", "upstream", "redis://app:Bad-Pw-Flag-3c4d@127.0.0.1:6379/notadb", "Bad-Pw-Flag-3c4d"),
    ("flag", "upstream", "http://app:Bad-Pw-Scheme-5e6f@127.0.0.1:6379", "Bad-Pw-Scheme-5e6f"),
    ("env", "REDIS_URL", "redis://:Bad-Pw-Env-7a8b@127.0.0.1:badport", "Bad-Pw-Env-7a8b"),
    ("flag", "warm", "cosmos://127.0.0.1:1/onlydb?sig=Bad-Sas-Warm-9c0d", "Bad-Sas-Warm-9c0d"),
    ("flag", "cold", "blob://127.0.0.1:1?sv=2021&sig=Bad-Sas-Cold-1e2f", "Bad-Sas-Cold-1e2f"),
    ("env", "BLOB_ACCOUNT_URL", "ftp://acct.example/?sv=2021&sig=Bad-Sas-Url-3a4b", "Bad-Sas-Url-3a4b"),
    ("env", "AZURE_STORAGE_CONNECTION_STRING", "AccountName=a;AccountKey=Bad-Key-5c6d;Bad-Key-Tail-7e8f",
     "Bad-Key-Tail-7e8f"),
]


@pytest.mark.parametrize("where,name,value,secret", BAD_SETTINGS, ids=[f"{w}-{n}" for w, n, _, _ in BAD_SETTINGS])
def test_no_secret_in_config_errors(where, name, value, secret, tmp_path):
    args: list[str] = []
    env: dict = {}
    if where == "file":
        conf = tmp_path / "bad.conf"
        conf.write_text(f"{name} {value}\n")
        args.append(str(conf))
    elif where == "flag":
        args += [f"--{name}", value]
    else:
        env[name] = value
    for mode in (["--check-config"], []):
        out = run_proxy_cli([*mode, *args, "--port", str(free_port()), "--dir", str(tmp_path)], timeout=30, env=env)
        text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
        assert out.returncode != 0, text
        assert secret not in text and "Bad-Key-5c6d" not in text, text
