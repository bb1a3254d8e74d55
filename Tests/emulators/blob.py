"""Azure Blob Storage emulator for tests (path-style, like Azurite). Stdlib only.

URL shape: http://127.0.0.1:<port>/devstoreaccount1/<container>/<blob>
Auth: Shared Key (exact string-to-sign), account / service SAS (`sig` verified),
Bearer tokens issued by identity.py. Block blobs only.
See README.md for the control API and the list of what is not emulated.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import threading
import time
import uuid
from datetime import datetime, timezone
from functools import cmp_to_key
from urllib.parse import unquote, parse_qsl
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

from .common import Emulator, Request, Response, http_date, verify_token

ACCOUNT = "devstoreaccount1"
WELL_KNOWN_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AAD_AUDIENCES = ("https://storage.azure.com", f"https://{ACCOUNT}.blob.core.windows.net")
MAX_PUT_BLOB = 5000 * 1024 * 1024      # 5000 MiB for versions >= 2019-12-12
MAX_BLOCK = 4000 * 1024 * 1024
MAX_BLOCKS = 50000

# Versions this emulator knows (like Azurite: anything else -> 400 InvalidHeaderValue).
KNOWN_VERSIONS = [
    "2015-02-21", "2015-04-05", "2015-07-08", "2015-12-11", "2016-05-31", "2017-04-17", "2017-07-29",
    "2017-11-09", "2018-03-28", "2018-11-09", "2019-02-02", "2019-07-07", "2019-10-10", "2019-12-12",
    "2020-02-10", "2020-04-08", "2020-06-12", "2020-08-04", "2020-10-02", "2020-12-06", "2021-02-12",
    "2021-04-10", "2021-06-08", "2021-08-06", "2021-10-04", "2021-12-02", "2022-11-02", "2023-01-03",
    "2023-05-03", "2023-08-03", "2023-11-03", "2024-02-04", "2024-05-04", "2024-08-04", "2024-11-04",
    "2025-01-05", "2025-05-05", "2025-07-05", "2025-11-05", "2026-02-06", "2026-04-06", "2026-06-06",
    "2026-10-06",
]
SERVICE_VERSION = KNOWN_VERSIONS[-1]

# The service orders x-ms-* headers with a culture-invariant collation, not ordinal order
# (hyphens are ignored at the first level). These weights are the ASCII part of that
# collation as published in Microsoft's azure-storage SDKs (MIT licence).
_LV0 = [0] * 33 + [
    0x71c, 0x0, 0x71f, 0x721, 0x723, 0x725, 0x0, 0x0, 0x0, 0x72d, 0x803, 0x0, 0x0, 0x733, 0x0,
    0xd03, 0xd1a, 0xd1c, 0xd1e, 0xd20, 0xd22, 0xd24, 0xd26, 0xd28, 0xd2a, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
    0xe02, 0xe09, 0xe0a, 0xe1a, 0xe21, 0xe23, 0xe25, 0xe2c, 0xe32, 0xe35, 0xe36, 0xe48, 0xe51,
    0xe70, 0xe7c, 0xe7e, 0xe89, 0xe8a, 0xe91, 0xe99, 0xe9f, 0xea2, 0xea4, 0xea6, 0xea7, 0xea9,
    0x0, 0x0, 0x0, 0x743, 0x744, 0x748, 0xe02, 0xe09, 0xe0a, 0xe1a, 0xe21, 0xe23, 0xe25,
    0xe2c, 0xe32, 0xe35, 0xe36, 0xe48, 0xe51, 0xe70, 0xe7c, 0xe7e, 0xe89, 0xe8a, 0xe91, 0xe99,
    0xe9f, 0xea2, 0xea4, 0xea6, 0xea7, 0xea9, 0x0, 0x74c, 0x0, 0x750, 0x0]
_LV4 = {39: 0x8012, 45: 0x8212}


def _collate(a: str, b: str) -> int:
    tables = [lambda c: _LV0[c] if c < 128 else 0, lambda c: _LV4.get(c, 0)]
    level, i, j = 0, 0, 0
    while level < 2:
        if level == 1 and i != j:
            return -1 if i > j else 1
        w1 = tables[level](ord(a[i])) if i < len(a) else 1
        w2 = tables[level](ord(b[j])) if j < len(b) else 1
        if w1 == 1 and w2 == 1:
            i = j = 0
            level += 1
        elif w1 == w2:
            i += 1
            j += 1
        elif w1 == 0:
            i += 1
        elif w2 == 0:
            j += 1
        else:
            return -1 if w1 < w2 else 1
    return 0


@functools.lru_cache(maxsize=16)
def _key_bytes(key_b64: str) -> bytes:
    return base64.b64decode(key_b64)


def sign(key_b64: str, text: str) -> str:
    return base64.b64encode(hmac.new(_key_bytes(key_b64), text.encode("utf-8"), hashlib.sha256).digest()).decode()


def shared_key_string_to_sign(method: str, raw_path: str, query_string: str, headers, account=ACCOUNT) -> str:
    """Service-side Shared Key string-to-sign (versions >= 2015-02-21). `headers`: case-insensitive mapping."""
    def h(name):
        v = headers.get(name)
        return "" if v is None else v
    length = h("Content-Length")
    if length == "0":
        length = ""
    parts = [method.upper(), h("Content-Encoding"), h("Content-Language"), length, h("Content-MD5"),
             h("Content-Type"), h("Date"), h("If-Modified-Since"), h("If-Match"), h("If-None-Match"),
             h("If-Unmodified-Since"), h("Range")]
    xms = {}
    for k, v in headers.items():
        lk = k.lower()
        if lk.startswith("x-ms-"):
            xms[lk] = v.strip() if lk not in xms else xms[lk] + "," + v.strip()
    canon_headers = "".join(f"{k}:{xms[k]}\n" for k in _collated(tuple(xms)))
    return "\n".join(parts) + "\n" + canon_headers + _canonical_resource(account, raw_path, query_string)


@functools.lru_cache(maxsize=512)
def _collated(names: tuple) -> tuple:
    """sorted(names, key=cmp_to_key(_collate)); a function of the names in their order (names the
    collation ranks equal keep it), so cached: clients send the same x-ms-* sets again and again."""
    return tuple(sorted(names, key=cmp_to_key(_collate)))


@functools.lru_cache(maxsize=1024)
def _canonical_resource(account: str, raw_path: str, query_string: str) -> str:
    resource = f"/{account}{raw_path}"
    params: dict[str, list[str]] = {}
    for k, v in parse_qsl(query_string, keep_blank_values=True):
        params.setdefault(k.lower(), []).append(v)
    for k in sorted(params):
        resource += f"\n{k}:{','.join(sorted(params[k]))}"
    return resource


def account_sas_string_to_sign(q: dict, account=ACCOUNT) -> str:
    g = lambda k: q.get(k, "")  # noqa: E731
    s = f"{account}\n{g('sp')}\n{g('ss')}\n{g('srt')}\n{g('st')}\n{g('se')}\n{g('sip')}\n{g('spr')}\n{g('sv')}\n"
    if g("sv") >= "2020-12-06":
        s += f"{g('ses')}\n"
    return s


def service_sas_string_to_sign(q: dict, container: str, blob: str | None, account=ACCOUNT) -> str:
    g = lambda k: q.get(k, "")  # noqa: E731
    res = f"/blob/{account}/{container}" + (f"/{blob}" if q.get("sr") in ("b", "bs", "bv") and blob else "")
    fields = [g("sp"), g("st"), g("se"), res, g("si"), g("sip"), g("spr"), g("sv")]
    if g("sv") >= "2018-11-09":
        fields += [g("sr"), g("sst")]
    if g("sv") >= "2020-12-06":
        fields += [g("ses")]
    fields += [g("rscc"), g("rscd"), g("rsce"), g("rscl"), g("rsct")]
    return "\n".join(fields)


class BlobError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: dict | None = None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail, self.headers = status, code, message, detail or {}, headers or {}


MESSAGES = {
    "BlobNotFound": (404, "The specified blob does not exist."),
    "ContainerNotFound": (404, "The specified container does not exist."),
    "ContainerAlreadyExists": (409, "The specified container already exists."),
    "BlobAlreadyExists": (409, "The specified blob already exists."),
    "ConditionNotMet": (412, "The condition specified using HTTP conditional header(s) is not met."),
    "InvalidRange": (416, "The range specified is invalid for the current size of the resource."),
    "ServerBusy": (503, "The server is currently unable to receive requests. Please retry your request."),
    "OperationTimedOut": (500, "The operation could not be completed within the permitted time."),
    "InternalError": (500, "The server encountered an internal error. Please retry the request."),
    "InvalidBlockList": (400, "The specified block list is invalid."),
    "InvalidBlobOrBlock": (400, "The specified blob or block content is invalid."),
    "InvalidQueryParameterValue": (400, "Value for one of the query parameters specified in the request URI is invalid."),
    "OutOfRangeQueryParameterValue": (400, "One of the query parameters specified in the request URI is outside the permissible range."),
    "MissingRequiredHeader": (400, "An HTTP header that's mandatory for this request is not specified."),
    "InvalidHeaderValue": (400, "The value for one of the HTTP headers is not in the correct format."),
    "Md5Mismatch": (400, "The MD5 value specified in the request did not match with the MD5 value calculated by the server."),
    "RequestBodyTooLarge": (413, "The request body is too large and exceeds the maximum permissible limit."),
    "AuthenticationFailed": (403, "Server failed to authenticate the request. Make sure the value of Authorization "
                                  "header is formed correctly including the signature."),
    "AuthorizationPermissionMismatch": (403, "This request is not authorized to perform this operation using this permission."),
    "AuthorizationResourceTypeMismatch": (403, "This request is not authorized to perform this operation using this resource type."),
    "AuthorizationServiceMismatch": (403, "This request is not authorized to perform this operation using this service."),
    "AuthorizationProtocolMismatch": (403, "This request is not authorized to perform this operation using this protocol."),
    "NoAuthenticationInformation": (401, "Server failed to authenticate the request. Please refer to the information in the www-authenticate header."),
    "InvalidAuthenticationInfo": (401, "Authentication information is not given in the correct format. Check the value of Authorization header."),
    "UnsupportedHttpVerb": (405, "The resource doesn't support the specified HTTP verb."),
    "InvalidUri": (400, "The requested URI does not represent any resource on the server."),
    "ResourceNotFound": (404, "The specified resource does not exist."),
    "InvalidResourceName": (400, "The specifed resource name contains invalid characters."),
}


def err(code: str, message: str | None = None, **detail) -> BlobError:
    status, msg = MESSAGES[code]
    return BlobError(status, code, message or msg, detail)


class Blob:
    def __init__(self):
        self.data = b""
        self.props: dict[str, str] = {}
        self.meta: dict[str, str] = {}
        self.etag = ""
        self.last_modified = 0.0
        self.created = time.time()
        self.committed_blocks: list[tuple[str, bytes]] = []


class BlobContainer:
    def __init__(self, name, meta):
        self.name = name
        self.meta = meta
        self.blobs: dict[str, Blob] = {}
        self.uncommitted: dict[str, dict[str, bytes]] = {}
        self.etag = ""
        self.last_modified = time.time()


class BlobEmulator(Emulator):
    name = "blob"

    def __init__(self, host="127.0.0.1", port=0, key=WELL_KNOWN_KEY, account=ACCOUNT, tls=False, verbose=False):
        super().__init__(host, port, tls=tls, verbose=verbose)
        self.key = key
        self.account = account
        self.lock = threading.RLock()
        self.etag_seq = 0
        self.reset_state()

    def reset_state(self):
        with getattr(self, "lock", threading.RLock()):
            self.containers: dict[str, BlobContainer] = {}

    @property
    def account_url(self):
        return f"{self.url}/{self.account}"

    def connection_string(self):
        return (f"DefaultEndpointsProtocol={self.scheme};AccountName={self.account};AccountKey={self.key};"
                f"BlobEndpoint={self.account_url};")

    # ------------------------------------------------------------------ routing
    def _split(self, req: Request):
        parts = req.path.split("/", 3)  # '', account, container, blob (encoded)
        account = unquote(parts[1]) if len(parts) > 1 else ""
        container = unquote(parts[2]) if len(parts) > 2 else ""
        blob = unquote(parts[3]) if len(parts) > 3 else ""
        return account, container, blob

    def operation(self, req: Request) -> str:
        _, container, blob = self._split(req)
        q = {k.lower(): v for k, v in req.query.items()}
        m = req.method
        comp, restype = q.get("comp", ""), q.get("restype", "")
        if not container:
            if comp == "list":
                return "ListContainers"
            if restype == "account" and comp == "properties":
                return "GetAccountInfo"
            if restype == "service" and comp == "properties":
                return "GetServiceProperties" if m == "GET" else "SetServiceProperties"
            return "Account" + m.title()
        if not blob:
            if restype == "container":
                if comp == "list":
                    return "ListBlobs"
                if comp == "metadata":
                    return "SetContainerMetadata" if m == "PUT" else "GetContainerMetadata"
                return {"PUT": "CreateContainer", "DELETE": "DeleteContainer", "GET": "GetContainerProperties",
                        "HEAD": "GetContainerProperties"}.get(m, "Container" + m.title())
            return "Container" + m.title()
        if m == "PUT":
            if comp == "block":
                return "PutBlock"
            if comp == "blocklist":
                return "PutBlockList"
            if comp == "metadata":
                return "SetBlobMetadata"
            if comp == "properties":
                return "SetBlobProperties"
            return "PutBlob"
        if m == "GET":
            if comp == "blocklist":
                return "GetBlockList"
            if comp == "metadata":
                return "GetBlobMetadata"
            return "GetBlob"
        if m == "HEAD":
            return "GetBlobProperties"
        if m == "DELETE":
            return "DeleteBlob"
        return "Blob" + m.title()

    # ------------------------------------------------------------------ responses
    def _base_headers(self, req: Request, extra=None):
        h = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": req.header("x-ms-version") or SERVICE_VERSION,
             "Date": http_date(), "Server": "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"}
        if cid := req.header("x-ms-client-request-id"):
            h["x-ms-client-request-id"] = cid
        if extra:
            h.update(extra)
        return h

    def _error(self, req: Request, e: BlobError) -> Response:
        h = self._base_headers(req, {"x-ms-error-code": e.code, "Content-Type": "application/xml", **e.headers})
        if e.status in (401, 403) and e.code in ("NoAuthenticationInformation", "InvalidAuthenticationInfo"):
            h["WWW-Authenticate"] = ("Bearer authorization_uri=https://login.microsoftonline.com/"
                                     "72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/authorize "
                                     "resource_id=https://storage.azure.com")
        t = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{e.code}</Code><Message>'
                f'{escape(e.message)}\nRequestId:{h["x-ms-request-id"]}\nTime:{t}</Message>')
        for k, v in e.detail.items():
            body += f"<{k}>{escape(str(v))}</{k}>"
        body += "</Error>"
        return Response(e.status, b"" if req.method == "HEAD" else body.encode(), h)

    def fault_response(self, req: Request, fault: dict) -> Response:
        if fault["kind"] == "throttle":
            code = fault.get("code", "ServerBusy")
            e = BlobError(503, code, MESSAGES["ServerBusy"][1])
            if "retry_after_ms" in fault:
                e.headers["Retry-After"] = str(max(1, int(fault["retry_after_ms"]) // 1000))
            return self._error(req, e)
        status = int(fault.get("status", 503))
        code = fault.get("code") or {503: "ServerBusy", 500: "InternalError", 404: "BlobNotFound",
                                     412: "ConditionNotMet", 408: "OperationTimedOut"}.get(status, "InternalError")
        msg = MESSAGES.get(code, (status, f"Injected fault {status}"))[1]
        return self._error(req, BlobError(status, code, msg))

    # ------------------------------------------------------------------ auth
    def _authenticate(self, req: Request, op: str, container: str, blob: str):
        auth = req.header("Authorization")
        q = req.query
        if auth:
            scheme, _, rest = auth.partition(" ")
            if scheme == "SharedKey":
                acct, _, sig = rest.partition(":")
                sts = shared_key_string_to_sign(req.method, req.path, req.query_string, req.headers, self.account)
                if acct != self.account or not hmac.compare_digest(sign(self.key, sts), sig):
                    raise err("AuthenticationFailed", AuthenticationErrorDetail=(
                        f"The MAC signature found in the HTTP request '{sig}' is not the same as any computed "
                        f"signature. Server used following string to sign: '{sts}'."))
                if not (req.header("x-ms-date") or req.header("Date")):
                    raise err("AuthenticationFailed", AuthenticationErrorDetail="Request date header not specified")
                return
            if scheme == "Bearer":
                if (req.header("x-ms-version") or "") < "2017-11-09":
                    raise err("AuthenticationFailed", AuthenticationErrorDetail=(
                        "Authentication scheme Bearer is not supported in this version."))
                ok, why = verify_token(rest.strip(), AAD_AUDIENCES + (self.url, self.account_url))
                if not ok:
                    raise BlobError(401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. "
                                    "Please refer to the information in the www-authenticate header.",
                                    {"AuthenticationErrorDetail": f"Issuer validation failed / token invalid: {why}"})
                return
            raise err("InvalidAuthenticationInfo")
        if "sig" in q:
            return self._check_sas(req, op, container, blob)
        raise err("NoAuthenticationInformation")

    def _check_sas(self, req: Request, op: str, container: str, blob: str):
        q = req.query
        if "ss" in q or "srt" in q:
            sts = account_sas_string_to_sign(q, self.account)
            if "b" not in q.get("ss", ""):
                raise err("AuthorizationServiceMismatch")
            need_rt = "o" if blob else ("c" if container else "s")
            if need_rt not in q.get("srt", ""):
                raise err("AuthorizationResourceTypeMismatch")
        else:
            sts = service_sas_string_to_sign(q, container, blob, self.account)
        if not hmac.compare_digest(sign(self.key, sts), q.get("sig", "")):
            raise err("AuthenticationFailed", AuthenticationErrorDetail=(
                f"Signature did not match. String to sign used was {sts}"))
        now = datetime.now(timezone.utc)

        def parse(t):
            return datetime.fromisoformat(t.replace("Z", "+00:00"))
        try:
            if parse(q["se"]) < now or ("st" in q and parse(q["st"]) > now):
                raise err("AuthenticationFailed", AuthenticationErrorDetail=(
                    f"Signed expiry time [{q.get('se')}] must be after signed start time and the current time"))
        except (KeyError, ValueError):
            raise err("AuthenticationFailed", AuthenticationErrorDetail="se is mandatory / malformed")
        if q.get("spr") == "https" and self.scheme != "https":
            raise err("AuthorizationProtocolMismatch")
        need = {"GetBlob": "r", "GetBlobProperties": "r", "GetBlockList": "r", "GetBlobMetadata": "r",
                "GetContainerProperties": "r", "ListBlobs": "l", "PutBlob": "cw", "PutBlock": "cw",
                "PutBlockList": "cw", "SetBlobMetadata": "w", "SetBlobProperties": "w", "DeleteBlob": "d",
                "CreateContainer": "c", "DeleteContainer": "d"}.get(op, "r")
        if not any(p in q.get("sp", "") for p in need):
            raise err("AuthorizationPermissionMismatch")
        if q.get("sr") == "b" and not blob:
            raise err("AuthorizationResourceTypeMismatch")

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, req: Request, op: str) -> Response:
        account, container, blob = self._split(req)
        try:
            ver = req.header("x-ms-version")
            if ver is not None and ver not in KNOWN_VERSIONS:
                raise err("InvalidHeaderValue", f"The API version {ver} is not supported by the emulator. "
                          "Pin an x-ms-version it knows.", HeaderName="x-ms-version", HeaderValue=ver)
            if ver is None and "sv" not in req.query:
                raise err("MissingRequiredHeader", HeaderName="x-ms-version")
            if account != self.account:
                raise err("InvalidUri" if not account else "ResourceNotFound")
            self._authenticate(req, op, container, blob)
            with self.lock:
                return self._route(req, op, container, blob)
        except BlobError as e:
            return self._error(req, e)

    def _new_etag(self):
        self.etag_seq += 1
        return f'"0x8D{int(time.time() * 1e3):011X}{self.etag_seq % 0xFFFF:04X}"'

    def _route(self, req, op, cname, bname) -> Response:
        if op == "GetAccountInfo":
            return Response(200, b"", self._base_headers(req, {"x-ms-sku-name": "Standard_RAGRS",
                                                               "x-ms-account-kind": "StorageV2",
                                                               "x-ms-is-hns-enabled": "false"}))
        if op == "ListContainers":
            items = "".join(f"<Container><Name>{escape(n)}</Name><Properties><Last-Modified>"
                            f"{http_date(c.last_modified)}</Last-Modified><Etag>{c.etag}</Etag></Properties>"
                            f"</Container>" for n, c in sorted(self.containers.items())
                            if n.startswith(req.query.get("prefix", "")))
            body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="'
                    f'{self.account_url}/"><Containers>{items}</Containers><NextMarker /></EnumerationResults>')
            return Response(200, body.encode(), self._base_headers(req, {"Content-Type": "application/xml"}))
        if not cname:
            raise err("UnsupportedHttpVerb") if req.method not in ("GET", "HEAD") else err("InvalidUri")
        c = self.containers.get(cname)
        if op == "CreateContainer":
            if not (3 <= len(cname) <= 63) or not all(ch.islower() or ch.isdigit() or ch == "-" for ch in cname) \
                    or cname.startswith("-") or "--" in cname:
                raise err("InvalidResourceName")
            if c is not None:
                raise err("ContainerAlreadyExists")
            c = BlobContainer(cname, self._meta(req))
            c.etag = self._new_etag()
            self.containers[cname] = c
            return Response(201, b"", self._base_headers(req, {"ETag": c.etag, "Last-Modified": http_date(c.last_modified)}))
        if c is None:
            raise err("ContainerNotFound")
        if op == "DeleteContainer":
            del self.containers[cname]
            return Response(202, b"", self._base_headers(req))
        if op in ("GetContainerProperties", "GetContainerMetadata"):
            h = {"ETag": c.etag, "Last-Modified": http_date(c.last_modified), "x-ms-lease-state": "available",
                 "x-ms-lease-status": "unlocked", "x-ms-has-immutability-policy": "false",
                 "x-ms-has-legal-hold": "false"}
            h.update({f"x-ms-meta-{k}": v for k, v in c.meta.items()})
            return Response(200, b"", self._base_headers(req, h))
        if op == "ListBlobs":
            return self._list_blobs(req, c)
        if not bname:
            raise err("UnsupportedHttpVerb")
        if len(bname) > 1024:
            raise err("InvalidUri")
        handler = {"PutBlob": self._put_blob, "PutBlock": self._put_block, "PutBlockList": self._put_block_list,
                   "GetBlob": self._get_blob, "GetBlobProperties": self._get_blob, "DeleteBlob": self._delete_blob,
                   "SetBlobMetadata": self._set_metadata, "GetBlockList": self._get_block_list,
                   "SetBlobProperties": self._set_properties, "GetBlobMetadata": self._get_blob}.get(op)
        if handler is None:
            raise err("UnsupportedHttpVerb")
        return handler(req, c, bname)

    # ------------------------------------------------------------------ blob ops
    @staticmethod
    def _meta(req):
        return {k[len("x-ms-meta-"):]: v for k, v in req.headers.items() if k.lower().startswith("x-ms-meta-")}

    def _check_conditions(self, req, b: Blob | None, write: bool):
        im, inm = req.header("If-Match"), req.header("If-None-Match")
        if inm == "*" and b is not None and write:
            raise err("BlobAlreadyExists")
        if im and (b is None or (im != "*" and im != b.etag)):
            if b is None and not write:
                raise err("BlobNotFound")
            raise err("ConditionNotMet")
        if inm and inm != "*" and b is not None and inm == b.etag:
            if write:
                raise err("ConditionNotMet")
            return "304"
        ims = req.header("If-Modified-Since")
        if ims and b is not None:
            from email.utils import parsedate_to_datetime
            if int(b.last_modified) <= parsedate_to_datetime(ims).timestamp():
                if write:
                    raise err("ConditionNotMet")
                return "304"
        ius = req.header("If-Unmodified-Since")
        if ius and b is not None:
            from email.utils import parsedate_to_datetime
            if int(b.last_modified) > parsedate_to_datetime(ius).timestamp():
                raise err("ConditionNotMet")
        return None

    def _props_from(self, req, put_blob: bool) -> dict:
        p = {}
        for prop, xh, std in (("Content-Type", "x-ms-blob-content-type", "Content-Type"),
                              ("Content-Encoding", "x-ms-blob-content-encoding", "Content-Encoding"),
                              ("Content-Language", "x-ms-blob-content-language", "Content-Language"),
                              ("Content-Disposition", "x-ms-blob-content-disposition", None),
                              ("Cache-Control", "x-ms-blob-cache-control", None),
                              ("Content-MD5", "x-ms-blob-content-md5", None)):
            v = req.header(xh)
            if v is None and put_blob and std:
                v = req.header(std)
            if v is not None:
                p[prop] = v
        p.setdefault("Content-Type", "application/octet-stream")
        return p

    def _commit(self, req, c: BlobContainer, name: str, data: bytes, blocks, status=201) -> Response:
        b = c.blobs.get(name)
        self._check_conditions(req, b, write=True)
        nb = Blob()
        nb.data = data
        nb.committed_blocks = blocks
        nb.props = self._props_from(req, put_blob=not blocks)
        if "Content-MD5" not in nb.props and not blocks:
            nb.props["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        nb.meta = self._meta(req)
        nb.etag = self._new_etag()
        nb.last_modified = time.time()
        nb.created = b.created if b else nb.last_modified
        c.blobs[name] = nb
        c.uncommitted.pop(name, None)
        h = {"ETag": nb.etag, "Last-Modified": http_date(nb.last_modified), "x-ms-request-server-encrypted": "true"}
        if not blocks:
            h["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        return Response(status, b"", self._base_headers(req, h))

    def _put_blob(self, req, c, name):
        bt = req.header("x-ms-blob-type")
        if bt is None:
            raise err("MissingRequiredHeader", HeaderName="x-ms-blob-type")
        if bt != "BlockBlob":
            raise err("InvalidHeaderValue", "Only BlockBlob is emulated.", HeaderName="x-ms-blob-type",
                      HeaderValue=bt)
        if len(req.body) > MAX_PUT_BLOB:
            raise err("RequestBodyTooLarge")
        md5 = req.header("Content-MD5")
        if md5 and md5 != base64.b64encode(hashlib.md5(req.body).digest()).decode():
            raise err("Md5Mismatch", UserSpecifiedMd5=md5,
                      ServerCalculatedMd5=base64.b64encode(hashlib.md5(req.body).digest()).decode())
        return self._commit(req, c, name, req.body, [])

    def _put_block(self, req, c, name):
        bid = req.query.get("blockid", "")
        try:
            raw = base64.b64decode(bid, validate=True)
        except ValueError:
            raise err("InvalidQueryParameterValue", QueryParameterName="blockid", QueryParameterValue=bid)
        if not bid or len(raw) > 64:
            raise err("InvalidQueryParameterValue", QueryParameterName="blockid", QueryParameterValue=bid)
        if len(req.body) > MAX_BLOCK:
            raise err("RequestBodyTooLarge")
        pending = c.uncommitted.setdefault(name, {})
        existing = c.blobs.get(name)
        lens = {len(k) for k in pending} | ({len(k) for k, _ in existing.committed_blocks} if existing else set())
        if lens and len(bid) not in lens:
            raise err("InvalidBlobOrBlock")
        if len(pending) >= 100000:
            raise err("InvalidBlobOrBlock")
        pending[bid] = req.body
        h = {"Content-MD5": base64.b64encode(hashlib.md5(req.body).digest()).decode(),
             "x-ms-request-server-encrypted": "true"}
        return Response(201, b"", self._base_headers(req, h))

    def _put_block_list(self, req, c, name):
        try:
            root = ET.fromstring(req.body)
        except ET.ParseError:
            raise err("InvalidBlockList", "The XML specified is not syntactically valid.")
        pending = c.uncommitted.get(name, {})
        existing = c.blobs.get(name)
        committed = dict(existing.committed_blocks) if existing else {}
        blocks = []
        for el in root:
            bid = (el.text or "").strip()
            if el.tag == "Uncommitted":
                data = pending.get(bid)
            elif el.tag == "Committed":
                data = committed.get(bid)
            elif el.tag == "Latest":
                data = pending.get(bid, committed.get(bid))
            else:
                raise err("InvalidBlockList")
            if data is None:
                raise err("InvalidBlockList")
            blocks.append((bid, data))
        if len(blocks) > MAX_BLOCKS:
            raise err("InvalidBlockList")
        return self._commit(req, c, name, b"".join(d for _, d in blocks), blocks)

    def _get_block_list(self, req, c, name):
        b = c.blobs.get(name)
        typ = req.query.get("blocklisttype", "committed")
        pending = c.uncommitted.get(name, {})
        if b is None and not pending:
            raise err("BlobNotFound")
        com = "".join(f"<Block><Name>{k}</Name><Size>{len(v)}</Size></Block>" for k, v in (b.committed_blocks if b else [])) \
            if typ in ("committed", "all") else ""
        unc = "".join(f"<Block><Name>{k}</Name><Size>{len(v)}</Size></Block>" for k, v in pending.items()) \
            if typ in ("uncommitted", "all") else ""
        body = (f'<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks>{com}</CommittedBlocks>'
                f'<UncommittedBlocks>{unc}</UncommittedBlocks></BlockList>')
        h = {"Content-Type": "application/xml"}
        if b:
            h.update({"ETag": b.etag, "Last-Modified": http_date(b.last_modified),
                      "x-ms-blob-content-length": str(len(b.data))})
        return Response(200, body.encode(), self._base_headers(req, h))

    def _blob_headers(self, b: Blob) -> dict:
        h = {"ETag": b.etag, "Last-Modified": http_date(b.last_modified), "x-ms-blob-type": "BlockBlob",
             "x-ms-creation-time": http_date(b.created), "x-ms-lease-state": "available",
             "x-ms-lease-status": "unlocked", "x-ms-server-encrypted": "true", "Accept-Ranges": "bytes",
             "x-ms-access-tier": "Hot", "x-ms-access-tier-inferred": "true"}
        h.update(b.props)
        h.update({f"x-ms-meta-{k}": v for k, v in b.meta.items()})
        return h

    @staticmethod
    def _parse_range(spec: str, size: int):
        if not spec.startswith("bytes="):
            return None
        a, _, z = spec[6:].partition("-")
        try:
            if a == "":
                n = int(z)
                return (max(0, size - n), size - 1) if n else "invalid"
            start = int(a)
            end = int(z) if z else size - 1
        except ValueError:
            return None
        if start >= size or end < start:
            return "invalid"
        return start, min(end, size - 1)

    def _get_blob(self, req, c, name):
        b = c.blobs.get(name)
        if b is None:
            raise err("BlobNotFound")
        if self._check_conditions(req, b, write=False) == "304":
            return Response(304, b"", self._base_headers(req, {"ETag": b.etag,
                                                               "Last-Modified": http_date(b.last_modified)}))
        h = self._base_headers(req, self._blob_headers(b))
        if req.method == "HEAD" or req.query.get("comp") == "metadata":
            h["Content-Length"] = str(len(b.data))
            if req.query.get("comp") == "metadata":
                return Response(200, b"", {k: v for k, v in h.items() if not k.startswith("Content")})
            return Response(200, b"", h)
        spec = req.header("x-ms-range") or req.header("Range")
        if spec:
            r = self._parse_range(spec, len(b.data))
            if r == "invalid":
                raise BlobError(416, "InvalidRange", MESSAGES["InvalidRange"][1],
                                headers={"Content-Range": f"bytes */{len(b.data)}"})
            if r is not None:
                s, e = r
                h["Content-Range"] = f"bytes {s}-{e}/{len(b.data)}"
                if "Content-MD5" in h:
                    if "Content-MD5" in b.props:
                        h["x-ms-blob-content-md5"] = b.props["Content-MD5"]
                    del h["Content-MD5"]
                part = b.data[s:e + 1]
                if req.header("x-ms-range-get-content-md5") == "true":
                    h["Content-MD5"] = base64.b64encode(hashlib.md5(part).digest()).decode()
                return Response(206, part, h)
        return Response(200, b.data, h)

    def _delete_blob(self, req, c, name):
        b = c.blobs.get(name)
        if b is None:
            raise err("BlobNotFound")
        self._check_conditions(req, b, write=True)
        del c.blobs[name]
        return Response(202, b"", self._base_headers(req, {"x-ms-delete-type-permanent": "true"}))

    def _set_metadata(self, req, c, name):
        b = c.blobs.get(name)
        if b is None:
            raise err("BlobNotFound")
        self._check_conditions(req, b, write=True)
        b.meta = self._meta(req)
        b.etag = self._new_etag()
        b.last_modified = time.time()
        return Response(200, b"", self._base_headers(req, {"ETag": b.etag, "Last-Modified": http_date(b.last_modified),
                                                           "x-ms-request-server-encrypted": "true"}))

    def _set_properties(self, req, c, name):
        b = c.blobs.get(name)
        if b is None:
            raise err("BlobNotFound")
        self._check_conditions(req, b, write=True)
        b.props = self._props_from(req, put_blob=False)
        b.etag = self._new_etag()
        b.last_modified = time.time()
        return Response(200, b"", self._base_headers(req, {"ETag": b.etag, "Last-Modified": http_date(b.last_modified)}))

    @staticmethod
    def _list_window(req):
        """`maxresults` (default and ceiling 5000; <= 0 is 400) and where `marker` resumes."""
        raw = req.query.get("maxresults")
        limit = 5000
        if raw is not None:
            try:
                limit = int(raw)
            except ValueError:
                raise err("InvalidQueryParameterValue", QueryParameterName="maxresults", QueryParameterValue=raw)
            if limit <= 0:
                raise err("OutOfRangeQueryParameterValue", QueryParameterName="maxresults", QueryParameterValue=raw,
                          MinimumAllowed="1", MaximumAllowed="5000")
            limit = min(limit, 5000)
        marker = req.query.get("marker", "")
        start = ""
        if marker:
            # The service's markers are opaque; this one is "2!<length>!<base64 of the next name>".
            try:
                _, _, b64 = marker.split("!", 2)
                start = base64.b64decode(b64, validate=True).decode()
            except ValueError:
                raise err("InvalidQueryParameterValue", QueryParameterName="marker", QueryParameterValue=marker)
        return limit, marker, start

    @staticmethod
    def _marker_for(name: str) -> str:
        b64 = base64.b64encode(name.encode()).decode()
        return f"2!{len(b64)}!{b64}"

    def _list_blobs(self, req, c: BlobContainer):
        """Blobs in name order, `maxresults` per page; `NextMarker` names the next blob, so blobs
        deleted between pages never make the listing skip one."""
        prefix = req.query.get("prefix", "")
        limit, marker, start = self._list_window(req)
        items = []
        next_marker = ""
        for n in sorted(c.blobs):
            if not n.startswith(prefix) or n < start:
                continue
            if len(items) == limit:
                next_marker = self._marker_for(n)
                break
            b = c.blobs[n]
            props = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in b.props.items())
            meta = ""
            if "metadata" in req.query.get("include", ""):
                meta = "<Metadata>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in b.meta.items()) + "</Metadata>"
            items.append(f"<Blob><Name>{escape(n)}</Name><Properties><Creation-Time>{http_date(b.created)}"
                         f"</Creation-Time><Last-Modified>{http_date(b.last_modified)}</Last-Modified>"
                         f"<Etag>{b.etag}</Etag><Content-Length>{len(b.data)}</Content-Length>{props}"
                         f"<BlobType>BlockBlob</BlobType><LeaseStatus>unlocked</LeaseStatus>"
                         f"<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>"
                         f"</Properties>{meta}</Blob>")
        echo = f"<Prefix>{escape(prefix)}</Prefix>"
        if marker:
            echo += f"<Marker>{escape(marker)}</Marker>"
        if "maxresults" in req.query:
            echo += f"<MaxResults>{limit}</MaxResults>"
        tail = f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker else "<NextMarker />"
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="{self.account_url}/" '
                f'ContainerName="{escape(c.name)}">{echo}<Blobs>{"".join(items)}</Blobs>{tail}</EnumerationResults>')
        return Response(200, body.encode(), self._base_headers(req, {"Content-Type": "application/xml"}))


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=10000)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args(argv)
    emu = BlobEmulator(a.host, a.port, tls=a.tls).start()
    print(f"READY blob {emu.account_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emu.stop()


if __name__ == "__main__":
    main()
