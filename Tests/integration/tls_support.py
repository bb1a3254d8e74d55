"""Test PKI made with the `openssl` CLI, and a redis-server that speaks only TLS.

`make_pki(dir)` writes, in a temp dir:
  ca.crt/ca.key            the test CA
  server.crt/.key          signed by it, SAN IP:127.0.0.1 and DNS:localhost
  other-name.crt/.key      signed by it, SAN DNS:other.example only (for host name mismatches)
  client.crt/.key          signed by it, extendedKeyUsage clientAuth (mTLS)
  other-ca.crt/.key        a second CA that signed nothing the server uses (wrong CA)
  self-signed.crt/.key     self-signed, SAN IP:127.0.0.1 (for upstream-tls-insecure)
EC P-256 keys: fast to make on a busy machine.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import redis

from harness import HOST, REDIS_SERVER, RedisServer, tail, wait_for


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{r.stderr.decode(errors='replace')}")


def _key_and_csr(d: Path, name: str, cn: str) -> None:
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3", "-subj", f"/CN=tierproxy test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _signed(d: Path, name: str, cn: str, ext: str, ca: str = "ca") -> None:
    _key_and_csr(d, name, cn)
    (d / f"{name}.ext").write_text(ext + "\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "3", "-extfile", f"{name}.ext", cwd=d)


@dataclass
class PKI:
    dir: Path

    def __getattr__(self, name: str) -> str:
        # pki.ca_crt -> <dir>/ca.crt, pki.other_name_key -> <dir>/other-name.key
        stem, _, ext = name.rpartition("_")
        path = self.dir / f"{stem.replace('_', '-')}.{ext}"
        if not path.exists():
            raise AttributeError(name)
        return str(path)


def make_pki(d: Path) -> PKI:
    d.mkdir(parents=True, exist_ok=True)
    _ca(d, "ca")
    _ca(d, "other-ca")
    server_ext = "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth"
    _signed(d, "server", "tierproxy-test-server", server_ext + "\nsubjectAltName=IP:127.0.0.1,DNS:localhost")
    _signed(d, "other-name", "other.example", server_ext + "\nsubjectAltName=DNS:other.example")
    _signed(d, "client", "tierproxy", "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth")
    _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "self-signed.key", "-out", "self-signed.crt", "-days", "3", "-subj", "/CN=self-signed",
             "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
    return PKI(d)


class TLSRedis(RedisServer):
    """redis-server with `--port 0 --tls-port P`: nothing but TLS reaches it. `cert` names the
    server certificate in the PKI (server, other-name, self-signed); `auth_clients` is Redis's
    tls-auth-clients (mTLS when yes)."""

    def __init__(self, tmp: Path, pki: PKI, cert: str = "server", auth_clients: bool = False,
                 port: Optional[int] = None, args: Iterable[str] = ()):
        super().__init__(tmp, port=port, args=args)
        self.pki = pki
        self.cert = cert
        self.auth_clients = auth_clients

    @property
    def url(self) -> str:
        return f"rediss://{HOST}:{self.port}"

    def start(self, timeout: float = 10.0) -> "TLSRedis":
        d = self.pki.dir
        cmd = [REDIS_SERVER, "--port", "0", "--tls-port", str(self.port), "--bind", HOST,
               "--tls-cert-file", str(d / f"{self.cert}.crt"), "--tls-key-file", str(d / f"{self.cert}.key"),
               "--tls-ca-cert-file", self.pki.ca_crt,
               "--tls-auth-clients", "yes" if self.auth_clients else "no",
               "--save", "", "--appendonly", "no", "--dir", str(self.dir),
               "--logfile", str(self.log), "--daemonize", "no", *self.args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: self.proc.poll() is not None or self._ping(), timeout,
                     desc=f"TLS redis-server on port {self.port}")
        except AssertionError:
            self.kill()
            raise
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited {self.proc.returncode}:\n{tail(self.log)}")
        return self

    def _ping(self) -> bool:
        try:
            c = self.client(socket_timeout=1, socket_connect_timeout=1)
            try:
                return bool(c.ping())
            finally:
                c.close()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def client(self, **kw: Any) -> redis.Redis:
        """A direct TLS client (with the client certificate, which mTLS needs and plain TLS ignores)."""
        kw.setdefault("socket_timeout", 30)
        ca = self.pki.self_signed_crt if self.cert == "self-signed" else self.pki.ca_crt
        return redis.Redis(host=HOST, port=self.port, ssl=True, ssl_ca_certs=ca,
                           ssl_certfile=self.pki.client_crt, ssl_keyfile=self.pki.client_key,
                           ssl_check_hostname=False, **kw)
