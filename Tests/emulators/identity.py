"""Entra ID token endpoints and a Key Vault secrets endpoint for tests. Stdlib only.

- IMDS:        GET  /metadata/identity/oauth2/token?api-version=2018-02-01&resource=R   (header Metadata: true)
- App Service: GET  /msi/token?api-version=2019-08-01&resource=R   (header X-IDENTITY-HEADER: <identity_header>)
- AAD v2:      POST /{tenant}/oauth2/v2.0/token  (grant_type=client_credentials, scope=R/.default,
               client_secret=... | client_assertion=<jwt>&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer)
- Key Vault:   GET  /secrets/{name}[/{version}]?api-version=7.4  (Authorization: Bearer <token for https://vault.azure.net>)
               PUT  /secrets/{name}?api-version=7.4  {"value": "..."}  (same auth)
Tokens are HS256 JWTs (see common.issue_token) that cosmos.py and blob.py verify.
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from urllib.parse import parse_qsl, unquote

from .common import (DEFAULT_OID, DEFAULT_TENANT, Emulator, Request, Response, issue_token, json_response,
                     verify_token)

CLIENT_ID = "00000000-0000-0000-0000-0000000c11e7"
CLIENT_SECRET = "emulator-client-secret"
IDENTITY_HEADER = "emulator-identity-header"
VAULT_AUDIENCES = ("https://vault.azure.net", "https://vault.azure.net/")
_KNOWN_RESOURCE = re.compile(
    r"^(https://(cosmos\.azure\.com|storage\.azure\.com|vault\.azure\.net|redis\.azure\.com|management\.azure\.com"
    r"|[a-z0-9-]+\.documents\.azure\.com(:443)?|[a-z0-9]+\.blob\.core\.windows\.net|[a-z0-9-]+\.vault\.azure\.net)"
    r"|https?://(127\.0\.0\.1|localhost)(:\d+)?(/.*)?)/?$")


class IdentityEmulator(Emulator):
    name = "identity"

    def __init__(self, host="127.0.0.1", port=0, tls=False, verbose=False, client_id=CLIENT_ID,
                 client_secret=CLIENT_SECRET, identity_header=IDENTITY_HEADER, token_lifetime_s=3600,
                 federated_token: str | None = None, oid=DEFAULT_OID, tenant=DEFAULT_TENANT):
        super().__init__(host, port, tls=tls, verbose=verbose)
        self.client_id, self.client_secret, self.identity_header = client_id, client_secret, identity_header
        self.token_lifetime_s = token_lifetime_s
        self.federated_token = federated_token
        self.oid, self.tenant = oid, tenant
        self.lock = threading.Lock()
        self.unknown_resources: set[str] = set()   # resources answered with AADSTS500011
        self.reset_state()

    def reset_state(self):
        self.secrets: dict[str, list[dict]] = {}

    def set_secret(self, name: str, value: str):
        with self.lock:
            ver = uuid.uuid4().hex
            now = int(time.time())
            self.secrets.setdefault(name, []).append({"value": value, "version": ver, "created": now})
            return ver

    # ------------------------------------------------------------------ control extras
    def control(self, req: Request) -> Response:
        p = req.path.rstrip("/")
        if p.startswith("/__secrets/") and req.method in ("PUT", "POST"):
            name = unquote(p[len("/__secrets/"):])
            return json_response(200, {"name": name, "version": self.set_secret(name, req.body.decode())})
        if p == "/__config" and req.method in ("PUT", "POST"):
            cfg = json.loads(req.body or b"{}")
            for k in ("token_lifetime_s", "client_secret", "identity_header", "federated_token", "client_id"):
                if k in cfg:
                    setattr(self, k, cfg[k])
            if "unknown_resources" in cfg:
                self.unknown_resources = set(cfg["unknown_resources"])
            return json_response(200, {"ok": True})
        if p == "/__token" and req.method == "GET":   # test convenience: mint a token directly
            tok, exp = issue_token(req.query.get("resource", "https://storage.azure.com"),
                                   int(req.query.get("lifetime_s", self.token_lifetime_s)), self.oid, self.tenant)
            return json_response(200, {"access_token": tok, "expires_on": exp})
        return super().control(req)

    # ------------------------------------------------------------------ routing
    def operation(self, req: Request) -> str:
        p = req.path
        if p.startswith("/metadata/identity/oauth2/token"):
            return "ImdsToken"
        if p.startswith("/msi/token") or (p in ("", "/") and req.query.get("api-version") == "2019-08-01"):
            return "AppServiceToken"
        if re.match(r"^/[^/]+/oauth2/v2\.0/token/?$", p):
            return "AadToken"
        if re.match(r"^/[^/]+/v2\.0/\.well-known/openid-configuration$", p):
            return "OpenIdConfiguration"
        if p.startswith("/secrets/"):
            return "KeyVaultSetSecret" if req.method == "PUT" else "KeyVaultGetSecret"
        return "Unknown"

    def fault_response(self, req: Request, fault: dict) -> Response:
        status = 429 if fault["kind"] == "throttle" else int(fault.get("status", 503))
        h = {}
        if status == 429:
            h["Retry-After"] = str(max(1, int(fault.get("retry_after_ms", 1000)) // 1000))
        return json_response(status, {"error": "temporarily_unavailable",
                                      "error_description": f"Injected fault {status}"}, h)

    def dispatch(self, req: Request, op: str) -> Response:
        fn = {"ImdsToken": self._imds, "AppServiceToken": self._app_service, "AadToken": self._aad,
              "OpenIdConfiguration": self._openid, "KeyVaultGetSecret": self._kv_get,
              "KeyVaultSetSecret": self._kv_set}.get(op)
        if fn is None:
            return json_response(404, {"error": "not_found", "error_description": f"no route for {req.path}"})
        return fn(req)

    def _resource_error(self, resource: str):
        if not resource:
            return "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'resource'."
        if resource.rstrip("/") in self.unknown_resources or not _KNOWN_RESOURCE.match(resource):
            return "invalid_resource", (f"AADSTS500011: The resource principal named {resource} was not found in "
                                        f"the tenant named {self.tenant}.")
        return None

    def _mint(self, resource: str):
        return issue_token(resource.rstrip("/"), int(self.token_lifetime_s), self.oid, self.tenant,
                           {"appid": self.client_id})

    def _imds(self, req: Request) -> Response:
        if req.method != "GET":
            return json_response(405, {"error": "invalid_request", "error_description": "Method not allowed"})
        if (req.header("Metadata") or "").lower() != "true":
            return json_response(400, {"error": "invalid_request",
                                       "error_description": "Required metadata header not specified"})
        if req.query.get("api-version") is None:
            return json_response(400, {"error": "invalid_request", "error_description": "Required query variable "
                                       "'api-version' is missing"})
        resource = req.query.get("resource", "")
        if e := self._resource_error(resource):
            return json_response(400, {"error": e[0], "error_description": e[1]})
        tok, exp = self._mint(resource)
        now = int(time.time())
        return json_response(200, {"access_token": tok, "client_id": self.client_id,
                                   "expires_in": str(exp - now), "expires_on": str(exp),
                                   "ext_expires_in": str(exp - now), "not_before": str(now),
                                   "resource": resource, "token_type": "Bearer"})

    def _app_service(self, req: Request) -> Response:
        if req.header("X-IDENTITY-HEADER") != self.identity_header:
            return json_response(401, {"statusCode": 401, "message": "The X-IDENTITY-HEADER header is missing or "
                                       "invalid."})
        if req.query.get("api-version") != "2019-08-01":
            return json_response(400, {"statusCode": 400, "message": "Invalid or missing api-version"})
        resource = req.query.get("resource", "")
        if e := self._resource_error(resource):
            return json_response(400, {"statusCode": 400, "message": e[1]})
        tok, exp = self._mint(resource)
        return json_response(200, {"access_token": tok, "expires_on": str(exp), "resource": resource,
                                   "token_type": "Bearer", "client_id": self.client_id})

    def _aad_error(self, status, error, desc):
        m = re.match(r"AADSTS(\d+)", desc)
        return json_response(status, {"error": error, "error_description": desc,
                                      "error_codes": [int(m.group(1))] if m else [], "timestamp": time.strftime(
                                          "%Y-%m-%d %H:%M:%SZ", time.gmtime()), "trace_id": str(uuid.uuid4()),
                                      "correlation_id": str(uuid.uuid4())})

    def _aad(self, req: Request) -> Response:
        if req.method != "POST":
            return self._aad_error(405, "invalid_request", "AADSTS900561: The endpoint only accepts POST requests.")
        if "application/x-www-form-urlencoded" not in (req.header("Content-Type") or ""):
            return self._aad_error(400, "invalid_request", "AADSTS900144: The request body must contain the "
                                   "following parameter: 'grant_type'.")
        form = dict(parse_qsl(req.body.decode(), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported "
                                   "grant type.")
        if form.get("client_id") != self.client_id:
            return self._aad_error(400, "unauthorized_client", f"AADSTS700016: Application with identifier "
                                   f"'{form.get('client_id')}' was not found in the directory.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return self._aad_error(400, "invalid_scope", f"AADSTS1002012: The provided value for scope {scope} "
                                   "is not valid. Client credential flows must have a scope value with /.default "
                                   "suffixed to the resource identifier (application ID URI).")
        resource = scope[: -len("/.default")]
        if "client_assertion" in form:
            if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return self._aad_error(400, "invalid_request", "AADSTS50027: Invalid client_assertion_type.")
            a = form["client_assertion"].strip()
            if a.count(".") != 2 or (self.federated_token is not None and a != self.federated_token.strip()):
                return self._aad_error(401, "invalid_client", "AADSTS700211: No matching federated identity "
                                       "record found for presented assertion.")
        elif "client_secret" in form:
            if form["client_secret"] != self.client_secret:
                return self._aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. "
                                       "Ensure the secret being sent in the request is the client secret value, "
                                       "not the client secret ID.")
        else:
            return self._aad_error(401, "invalid_client", "AADSTS7000218: The request body must contain the "
                                   "following parameter: 'client_assertion' or 'client_secret'.")
        if e := self._resource_error(resource):
            return self._aad_error(400, "invalid_resource" if "500011" in e[1] else e[0], e[1])
        tok, exp = self._mint(resource)
        life = exp - int(time.time())
        return json_response(200, {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life,
                                   "access_token": tok})

    def _openid(self, req: Request) -> Response:
        tenant = req.path.split("/")[1]
        base = self.url
        return json_response(200, {"token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                                   "issuer": f"{base}/{tenant}/v2.0",
                                   "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                                   "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                                   "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                                             "private_key_jwt"],
                                   "response_types_supported": ["code", "id_token", "token"],
                                   "tenant_region_scope": "WW"})

    def _kv_auth(self, req: Request):
        auth = req.header("Authorization") or ""
        challenge = {"WWW-Authenticate": f'Bearer authorization="{self.url}/{self.tenant}", '
                                         f'resource="https://vault.azure.net"'}
        if not auth.startswith("Bearer "):
            return json_response(401, {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing "
                                                 "a Bearer or PoP token."}}, challenge)
        ok, why = verify_token(auth[7:].strip(), VAULT_AUDIENCES)
        if not ok:
            return json_response(401, {"error": {"code": "Unauthorized", "message": f"AKV10022: Invalid token "
                                                 f"({why})."}}, challenge)
        if not req.query.get("api-version"):
            return json_response(400, {"error": {"code": "BadParameter", "message": "The api-version query "
                                                 "parameter is missing."}})
        return None

    def _secret_body(self, name, s):
        return {"value": s["value"], "id": f"{self.url}/secrets/{name}/{s['version']}",
                "attributes": {"enabled": True, "created": s["created"], "updated": s["created"],
                               "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}, "tags": {}}

    def _kv_get(self, req: Request) -> Response:
        if r := self._kv_auth(req):
            return r
        parts = [unquote(p) for p in req.path.strip("/").split("/")]
        name = parts[1] if len(parts) > 1 else ""
        version = parts[2] if len(parts) > 2 else ""
        with self.lock:
            versions = self.secrets.get(name, [])
            s = next((v for v in versions if v["version"] == version), None) if version else \
                (versions[-1] if versions else None)
        if s is None:
            return json_response(404, {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) "
                                                 f"{name} was not found in this key vault. If you recently deleted "
                                                 "this secret you may be able to recover it using the correct "
                                                 "recovery command."}})
        return json_response(200, self._secret_body(name, s))

    def _kv_set(self, req: Request) -> Response:
        if r := self._kv_auth(req):
            return r
        name = unquote(req.path.strip("/").split("/")[1])
        try:
            value = json.loads(req.body)["value"]
        except (ValueError, KeyError, TypeError):
            return json_response(400, {"error": {"code": "BadParameter", "message": "Property value is required"}})
        self.set_secret(name, value)
        return json_response(200, self._secret_body(name, self.secrets[name][-1]))
