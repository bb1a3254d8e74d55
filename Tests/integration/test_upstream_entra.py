"""`upstream-auth entra` and Key Vault upstream passwords against real parts on loopback: a
loopback IMDS endpoint issuing short-lived JWTs with an `oid` claim, a redis-server (plain and
TLS) whose ACL user of that oid has the current tokens as passwords (added when issued, the
old ones removed later), and the Key Vault stand-in for a rotated upstream password."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from harness import RawConn, wait_for
from tls_support import TLSRedis, make_pki

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from Tests.emulators.common import self_signed_cert  # noqa: E402
from Tests.emulators.identity import IdentityEmulator  # noqa: E402

pytestmark = pytest.mark.proxy_process

OID = "6f1c0a52-9b1e-4c51-8d53-3c2f27a1e001"
ADMIN_PASSWORD = "admin-pw-not-a-token"
NO_TIERS = {"warm": "none", "cold": "none"}
# No ambient Azure identity may pick another flow than the IMDS stand-in.
NO_AZURE = {k: "" for k in ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT",
                            "IDENTITY_HEADER", "AZURE_TENANT_ID", "AZURE_CLIENT_ID")}


class RedisTokenIssuer(IdentityEmulator):
    """IMDS that, before answering with a redis.azure.com token, adds it as a password of the
    ACL user `oid` (Azure's side of the contract) and removes the tokens two issues back."""

    def __init__(self, admin: redis.Redis, lifetime_s: int, **kw):
        super().__init__(oid=OID, token_lifetime_s=lifetime_s, **kw)
        self.admin = admin
        self.issued: list[str] = []

    def _mint(self, resource: str):
        tok, exp = super()._mint(resource)
        if resource.rstrip("/") == "https://redis.azure.com":
            self.admin.execute_command("ACL", "SETUSER", OID, "on", f">{tok}", "~*", "&*", "+@all")
            self.issued.append(tok)
            if len(self.issued) > 2:
                self.admin.execute_command("ACL", "SETUSER", OID, f"<{self.issued[-3]}")
        return tok, exp


def lock_default_user(srv) -> redis.Redis:
    admin = srv.admin()
    admin.execute_command("ACL", "SETUSER", "default", "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all")
    srv.password = ADMIN_PASSWORD                 # harness admin() authenticates from now on
    return srv.admin()


class AuthWatch(threading.Thread):
    """Which upstream connections were seen with `cmd=auth` in CLIENT LIST (MONITOR never shows
    AUTH), sampled often, and Redis's count of AUTH calls."""

    def __init__(self, admin: redis.Redis):
        super().__init__(daemon=True)
        self.admin = admin
        self.seen: dict[str, int] = {}          # addr -> samples in which it showed cmd=auth
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                for c in self.admin.client_list():
                    if c.get("cmd") == "auth" and c.get("user") == OID:
                        self.seen[c["addr"]] = self.seen.get(c["addr"], 0) + 1
            except redis.RedisError:
                pass
            time.sleep(0.005)

    def auth_calls(self) -> int:
        return int(self.admin.info("commandstats").get("cmdstat_auth", {}).get("calls", 0))


def proxy_addrs(admin: redis.Redis) -> dict[str, dict]:
    return {c["addr"]: c for c in admin.client_list() if c.get("user") == OID}


def run_rotation(srv, make_proxy, proxy_flags: dict):
    admin = lock_default_user(srv)
    emu = RedisTokenIssuer(srv.admin(), lifetime_s=20).start()
    try:
        prx = make_proxy(srv.url, flags={**NO_TIERS, "upstream-auth": "entra", "loglevel": "verbose",
                                         **proxy_flags},
                         env={**NO_AZURE, "TIERPROXY_IMDS_ENDPOINT": f"{emu.url}/metadata/identity/oauth2/token"})
        mon = AuthWatch(srv.admin())
        mon.start()
        errors: list[str] = []
        stop = threading.Event()

        def load(i: int, pinned: bool):
            # Client 3 speaks RESP3 (HELLO 3 pins it): its re-AUTH replies are RESP3 too.
            c = prx.client(socket_timeout=30, protocol=3 if i == 3 else 2)
            if pinned:
                c.client_setname(f"pinned-{i}")
            n = 0
            while not stop.is_set():
                try:
                    c.set(f"k{i}", n)
                    assert c.get(f"k{i}") == str(n).encode()
                    c.incr(f"c{i}")
                except Exception as e:  # noqa: BLE001 - every error is a finding
                    errors.append(f"client {i}: {e!r}")
                n += 1
                time.sleep(0.02)

        workers = [threading.Thread(target=load, args=(i, i % 2 == 1), daemon=True) for i in range(4)]
        for w in workers:
            w.start()
        multi = RawConn(prx.port, timeout=120)
        assert multi.cmd("CLIENT", "SETNAME", "in-multi").v == b"OK"
        assert multi.cmd("MULTI").v == b"OK"
        assert multi.cmd("SET", "tx", "1").v == b"QUEUED"
        blocked = RawConn(prx.port, timeout=120)
        assert blocked.cmd("CLIENT", "SETNAME", "blocked").v == b"OK"
        from harness import encode_command as C
        blocked.send(C("BLPOP", "waits", "0"))
        subscriber = prx.client(socket_timeout=30).pubsub()
        subscriber.subscribe("news")
        assert subscriber.get_message(timeout=30)["type"] == "subscribe"
        wait_for(lambda: len(emu.issued) >= 1 and len(proxy_addrs(admin)) >= 5, 60, desc="the proxy's connections")
        before = mon.auth_calls()
        conns = proxy_addrs(admin)
        # Samples from here on only: each connection showed cmd=auth once already, at its handshake.
        mon.seen.clear()
        by_name = {c.get("name"): a for a, c in conns.items()}
        shared = [a for a, c in conns.items() if not c.get("name")]
        wait_for(lambda: len(emu.issued) >= 4, 120, desc="three token rotations")
        # Every live connection but the two held ones re-authenticated with each new token: the
        # shared connections (seen with cmd=auth) and the pinned load clients.
        # (The last token's re-AUTHs may still be on their way: wait for them, not for a moment.)
        wait_for(lambda: any(mon.seen.get(a) for a in shared), 60, desc=f"a shared re-AUTH: {mon.seen} {shared}")
        wait_for(lambda: mon.auth_calls() - before >= 3 * (len(shared) + 2), 60,
                 desc=f"three rounds of re-AUTHs ({before} before, {conns})")
        # Nothing went into the open transaction or ahead of the waiting BLPOP.
        assert not mon.seen.get(by_name["in-multi"]) and not mon.seen.get(by_name["blocked"]), mon.seen
        assert multi.cmd("EXEC").py() == [b"OK"]
        admin.lpush("waits", "x")
        assert blocked.read_reply(timeout=30).py() == [b"waits", b"x"]
        # Once idle, they re-authenticate with the current token (and then sit with cmd=auth).
        wait_for(lambda: mon.seen.get(by_name["in-multi"]) and mon.seen.get(by_name["blocked"]), 30,
                 desc="the held re-AUTHs")
        assert multi.cmd("GET", "tx").v == b"1" and blocked.cmd("PING").v == b"PONG"
        # The subscriber was left alone: the next thing it reads is the message, not an AUTH's reply.
        admin.publish("news", "after rotations")
        msg = subscriber.get_message(timeout=30)
        assert msg and msg["type"] == "message" and msg["data"] == b"after rotations", msg
        subscriber.close()
        stop.set()
        for w in workers:
            w.join(30)
        assert errors == []
        failures = [e for e in admin.acl_log() if e.get("reason") == "auth"]
        assert failures == [], failures
        assert "refused re-authentication" not in prx.output()
        for tok in emu.issued:
            assert tok not in prx.output(), "a token was logged"
        multi.close()
        blocked.close()
        mon.stop.set()
    finally:
        emu.stop()


def test_entra_tokens_rotate_under_load_with_multi_and_blpop(make_redis, make_proxy, tmp_path):
    # With embedded lower tiers, so the proxy's own connections (promotions, probes) renew too.
    run_rotation(make_redis(), make_proxy, {"threads": "2", "warm": f"sqlite:{tmp_path}/warm.db",
                                            "cold": f"dir:{tmp_path}/cold"})


def test_entra_tokens_rotate_over_tls(tmp_root: Path, make_proxy):
    pki = make_pki(tmp_root / "pki-entra")
    srv = TLSRedis(tmp_root, pki).start()
    try:
        run_rotation(srv, make_proxy, {"threads": "1", "upstream-tls-ca-cert-file": pki.ca_crt})
    finally:
        srv.cleanup()


def test_entra_renewal_failures_are_retried_and_logged(make_redis, make_proxy):
    """The token endpoint fails the renewal a few times: each failure is logged with how long the
    current token still works, the fetch is retried with backoff, and the next token is used."""
    srv = make_redis()
    admin = lock_default_user(srv)
    emu = RedisTokenIssuer(srv.admin(), lifetime_s=40).start()
    try:
        prx = make_proxy(srv.url, flags={**NO_TIERS, "upstream-auth": "entra", "threads": "1"},
                         env={**NO_AZURE, "TIERPROXY_IMDS_ENDPOINT": f"{emu.url}/metadata/identity/oauth2/token"})
        c = prx.client()
        assert c.set("k", "v")
        emu.faults.configure({"kind": "status", "status": 503, "count": 5, "op": "ImdsToken"})
        wait_for(lambda: "not renewed" in prx.output(), 60, desc="a logged renewal failure")
        assert "the current one works" in prx.output() and "retrying in" in prx.output()
        before = int(admin.info("commandstats").get("cmdstat_auth", {}).get("calls", 0))
        wait_for(lambda: len(emu.issued) >= 2, 60, desc="the renewal after the failures")
        wait_for(lambda: int(admin.info("commandstats").get("cmdstat_auth", {}).get("calls", 0)) > before, 30,
                 desc="the re-AUTH with the renewed token")
        assert c.get("k") == b"v"
        assert "refused re-authentication" not in prx.output()
    finally:
        emu.stop()


def test_entra_token_endpoint_down_is_a_clear_error(make_redis, make_proxy):
    srv = make_redis()
    lock_default_user(srv)
    prx = make_proxy(srv.url, wait="port", flags={**NO_TIERS, "upstream-auth": "entra"},
                     env={**NO_AZURE, "TIERPROXY_IMDS_ENDPOINT": "http://127.0.0.1:9/metadata/identity/oauth2/token"})
    with RawConn(prx.port, timeout=60) as c:
        r = c.cmd("PING", timeout=60)
    assert r.is_error and b"no Entra ID token" in r.v, r


def test_keyvault_upstream_password_rotates_on_sighup(make_redis, make_proxy):
    """REDIS_PASSWORD from Key Vault (KEY_VAULT_URI + REDIS_PASSWORD_SECRET_NAME): resolved at
    start; after a rotation and SIGHUP new connections use the new password, old ones go on."""
    srv = make_redis()
    admin = lock_default_user(srv)
    admin.execute_command("ACL", "SETUSER", "app", "on", ">first-pw", "~*", "&*", "+@all")
    emu = IdentityEmulator(tls=True).start()
    try:
        emu.set_secret("redis-password", "first-pw")
        env = {**NO_AZURE, "AZURE_TENANT_ID": emu.tenant, "AZURE_CLIENT_ID": emu.client_id,
               "AZURE_CLIENT_SECRET": emu.client_secret, "AZURE_AUTHORITY_HOST": emu.url + "/",
               "KEY_VAULT_URI": emu.url + "/", "REDIS_PASSWORD_SECRET_NAME": "redis-password"}
        prx = make_proxy(f"redis://app:@127.0.0.1:{srv.port}",
                         flags={**NO_TIERS, "tier-tls-ca-cert-file": self_signed_cert()[0], "loglevel": "debug"}, env=env)
        old = RawConn(prx.port)
        assert old.cmd("CLIENT", "SETNAME", "old").v == b"OK"         # pinned, authenticated with first-pw
        assert old.cmd("SET", "a", "1").v == b"OK"
        admin.execute_command("ACL", "SETUSER", "app", ">second-pw", "<first-pw")
        emu.set_secret("redis-password", "second-pw")
        prx.signal(signal.SIGHUP)
        wait_for(lambda: "Secrets resolved" in prx.output().split("Received SIGHUP")[-1], 30, desc="the reload")

        def new_works() -> bool:
            with RawConn(prx.port) as c:
                return c.cmd("CLIENT", "SETNAME", "new").v == b"OK" and c.cmd("GET", "a").v == b"1"
        wait_for(new_works, 30, desc="a new connection with the new password")
        assert old.cmd("GET", "a").v == b"1"                           # the old one keeps working
        names = {c.get("name"): c["user"] for c in admin.client_list()}
        assert names.get("old") == "app"
        for s in ("first-pw", "second-pw", emu.client_secret):
            assert s not in prx.output()
        old.close()
    finally:
        emu.stop()
