"""Azure Cosmos DB (NoSQL API, gateway REST) emulator for tests. Stdlib only.

Faithful where tierproxy and the official SDK look: master-key and AAD
`authorization` verification, account/database/container/pkranges/document
resources, system properties, TTL, 2 MB item limit, status codes, error
bodies and the response headers the SDK reads. Not a query engine.
See README.md for the control API and the list of what is not emulated.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import struct
import threading
import time
import uuid
from urllib.parse import unquote, unquote_plus

from .common import Emulator, Request, Response, http_date, verify_token

WELL_KNOWN_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
MAX_ITEM_BYTES = 2 * 1024 * 1024
MAX_ID_BYTES = 1023          # item id; database/container names: 255 chars
SERVICE_VERSION = "version=2.14.0.0"
AAD_AUDIENCES = ("https://cosmos.azure.com", "https://localhost.documents.azure.com")
DATE_SKEW_S = 15 * 60


def sign(key_b64: str, verb: str, resource_type: str, resource_link: str, x_ms_date: str, date: str = "") -> str:
    """Service-side master-key signature (base64 HMAC-SHA256)."""
    text = f"{verb.lower()}\n{resource_type.lower()}\n{resource_link}\n{x_ms_date.lower()}\n{date.lower()}\n"
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), text.encode(), hashlib.sha256).digest()).decode()


_SEGMENTS: dict[str, tuple] = {}      # percent-encoded path -> decoded segments (the same paths recur)


@functools.lru_cache(maxsize=16)
def _key_bytes(key_b64: str) -> bytes:
    return base64.b64decode(key_b64)


@functools.lru_cache(maxsize=256)
def _date_ts(text: str) -> float:
    """parsedate_to_datetime(text).timestamp() (raises the same errors; results cached: a client
    sends the same x-ms-date for a whole second)."""
    from email.utils import parsedate_to_datetime
    return parsedate_to_datetime(text).timestamp()


@functools.lru_cache(maxsize=1024)
def _auth_fields(raw: str) -> tuple:
    """(type, ver, sig) of an `authorization` header value. .NET HttpUtility.UrlDecode semantics:
    '+' means space, so an unencoded base64 '+' fails. Cached (a pure function of the header)."""
    parts = {}
    for item in unquote_plus(raw).split("&"):
        k, _, v = item.partition("=")
        parts[k.strip().lower()] = v
    return parts.get("type", ""), parts.get("ver"), parts.get("sig", "")


def string_to_sign(verb, resource_type, resource_link, x_ms_date, date=""):
    return f"{verb.lower()}\n{resource_type.lower()}\n{resource_link}\n{x_ms_date.lower()}\n{date.lower()}\n"


def _rid(parent: bytes, extra: int, n: int) -> bytes:
    return parent + os.urandom(extra) if n is None else parent + struct.pack(">Q", n)[-extra:]


def _b64rid(b: bytes) -> str:
    return base64.b64encode(b).decode().replace("/", "-")


class CosmosError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Container:
    def __init__(self, db: "Database", body: dict, rid: bytes):
        self.db = db
        self.id = body["id"]
        self.rid = rid
        pk = body.get("partitionKey") or {"paths": ["/id"], "kind": "Hash"}
        pk.setdefault("kind", "Hash")
        pk.setdefault("version", 2)
        self.pk = pk
        self.default_ttl = body.get("defaultTtl")
        self.ts = int(time.time())
        self.etag = f'"{uuid.uuid4()}"'
        self.docs: dict[tuple[str, str], dict] = {}
        self.doc_seq = 0
        self.pkr_etag = f'"{uuid.uuid4().int % 10**6}"'

    def props(self):
        d = {"id": self.id, "indexingPolicy": {"indexingMode": "consistent", "automatic": True,
                                                 "includedPaths": [{"path": "/*"}],
                                                 "excludedPaths": [{"path": '/"_etag"/?'}]},
             "partitionKey": self.pk, "conflictResolutionPolicy": {
                 "mode": "LastWriterWins", "conflictResolutionPath": "/_ts", "conflictResolutionProcedure": ""},
             "geospatialConfig": {"type": "Geography"},
             "_rid": _b64rid(self.rid), "_ts": self.ts, "_self": f"dbs/{_b64rid(self.db.rid)}/colls/{_b64rid(self.rid)}/",
             "_etag": self.etag, "_docs": "docs/", "_sprocs": "sprocs/", "_triggers": "triggers/",
             "_udfs": "udfs/", "_conflicts": "conflicts/"}
        if self.default_ttl is not None:
            d["defaultTtl"] = self.default_ttl
        return d


class Database:
    def __init__(self, body: dict, rid: bytes):
        self.id = body["id"]
        self.rid = rid
        self.ts = int(time.time())
        self.etag = f'"{uuid.uuid4()}"'
        self.colls: dict[str, Container] = {}
        self.coll_seq = 0

    def props(self):
        r = _b64rid(self.rid)
        return {"id": self.id, "_rid": r, "_self": f"dbs/{r}/", "_etag": self.etag,
                "_colls": "colls/", "_users": "users/", "_ts": self.ts}


class CosmosEmulator(Emulator):
    name = "cosmos"

    def __init__(self, host="127.0.0.1", port=0, key=WELL_KNOWN_KEY, tls=False, verbose=False,
                 aad_audiences=AAD_AUDIENCES):
        super().__init__(host, port, tls=tls, verbose=verbose)
        self.key = key
        # the SDK asks for scheme://host/.default (no port), like https://{account}.documents.azure.com/.default
        self.aad_audiences = tuple(aad_audiences) + (self.url, f"{self.scheme}://{self.host}",
                                                     f"{self.scheme}://localhost")
        self.lock = threading.RLock()
        self.lsn = 0
        self.reset_state()

    def reset_state(self):
        with getattr(self, "lock", threading.RLock()):
            self.dbs: dict[str, Database] = {}
            self.db_seq = 0

    # ------------------------------------------------------------------ routing
    @staticmethod
    def _segments(req: Request) -> list[str]:
        seg = _SEGMENTS.get(req.path)
        if seg is None:
            seg = tuple(unquote(s) for s in req.path.strip("/").split("/") if s != "")
            if len(_SEGMENTS) >= 4096:
                _SEGMENTS.clear()
            _SEGMENTS[req.path] = seg
        return list(seg)

    def operation(self, req: Request) -> str:
        seg = self._segments(req)
        m = req.method
        n = len(seg)
        if n == 0:
            return "GetDatabaseAccount"
        kind = seg[-1] if n % 2 == 1 else seg[-2]
        feed = n % 2 == 1
        names = {"dbs": "Database", "colls": "Container", "docs": "Document", "pkranges": "PartitionKeyRanges",
                 "offers": "Offer"}
        noun = names.get(kind, kind)
        if feed:
            if m == "POST":
                if req.header("x-ms-documentdb-isquery", "").lower() == "true" or \
                        "query" in req.header("Content-Type", ""):
                    return f"Query{noun}s"
                if noun == "Document" and req.header("x-ms-documentdb-is-upsert", "").lower() == "true":
                    return "UpsertDocument"
                return f"Create{noun}"
            return f"ReadFeed{noun}s" if noun != "PartitionKeyRanges" else "ReadPartitionKeyRanges"
        return {"GET": "Read", "PUT": "Replace", "DELETE": "Delete", "HEAD": "Head", "PATCH": "Patch"}.get(m, m) + noun

    # ------------------------------------------------------------------ helpers
    def _headers(self, req: Request, extra: dict | None = None) -> dict:
        with self.lock:
            self.lsn += 1
            lsn = self.lsn
        h = {"Content-Type": "application/json",
             "x-ms-activity-id": req.header("x-ms-activity-id") or str(uuid.uuid4()),
             "x-ms-request-charge": "1",
             "x-ms-session-token": f"0:-1#{lsn}",
             "x-ms-schemaversion": "1.18", "x-ms-serviceversion": SERVICE_VERSION,
             "x-ms-gatewayversion": SERVICE_VERSION, "lsn": str(lsn), "x-ms-global-Committed-lsn": str(lsn),
             "x-ms-number-of-read-regions": "0", "x-ms-transport-request-id": str(lsn),
             "x-ms-last-state-change-utc": http_date(), "Date": http_date(),
             "Cache-Control": "no-store, no-cache", "Pragma": "no-cache",
             "x-ms-resource-quota": "documentSize=51200;documentsSize=52428800;collectionSize=52428800;",
             "x-ms-resource-usage": "documentSize=0;documentsSize=0;collectionSize=0;",
             "Server": "Microsoft-HTTPAPI/2.0"}
        if extra:
            h.update(extra)
        return h

    def _json(self, req, status, obj, extra=None) -> Response:
        return Response(status, json.dumps(obj, separators=(",", ":")).encode(), self._headers(req, extra))

    def _error(self, req, e: CosmosError) -> Response:
        act = req.header("x-ms-activity-id") or str(uuid.uuid4())
        msg = e.message
        if e.status != 401:
            msg = f'Message: {{"Errors":[{json.dumps(e.message)}]}}'
        body = {"code": e.code, "message": f"{msg}\r\nActivityId: {act}, Microsoft.Azure.Documents.Common/2.14.0"}
        h = self._headers(req, {"x-ms-activity-id": act, **e.headers})
        if e.status >= 400:
            h.pop("x-ms-session-token", None) if e.status in (401, 429) else None
        return Response(e.status, json.dumps(body).encode(), h)

    def fault_response(self, req: Request, fault: dict) -> Response:
        if fault["kind"] == "throttle" or fault.get("status") == 429:
            ra = int(fault.get("retry_after_ms", 100))
            return self._error(req, CosmosError(
                429, fault.get("code", "TooManyRequests"),
                "Request rate is large. More Request Units may be needed, so no changes were made. "
                "Please retry this request later. Learn more: http://aka.ms/cosmosdb-error-429",
                {"x-ms-retry-after-ms": str(ra), "x-ms-substatus": str(fault.get("substatus", 3200))}))
        status = int(fault.get("status", 503))
        codes = {503: "ServiceUnavailable", 500: "InternalServerError", 408: "RequestTimeout",
                 449: "RetryWith", 410: "Gone", 412: "PreconditionFailed", 404: "NotFound", 409: "Conflict"}
        return self._error(req, CosmosError(status, fault.get("code", codes.get(status, "Error")),
                                            fault.get("message", f"Injected fault {status}"),
                                            {"x-ms-substatus": str(fault.get("substatus", 0))}))

    # ------------------------------------------------------------------ auth
    def _auth(self, req: Request, seg: list[str]):
        raw = req.header("authorization")
        if not raw:
            raise CosmosError(401, "Unauthorized", "Required Header authorization is missing. "
                              "Ensure a valid Authorization token is passed.")
        typ, ver, sig = _auth_fields(raw)
        if ver != "1.0" or typ not in ("master", "aad", "resource"):
            raise CosmosError(401, "Unauthorized", "Invalid authorization header. Expected format "
                              "'type={typeoftoken}&ver={tokenversion}&sig={hashsignature}'.")
        if typ == "aad":
            ok, why = verify_token(sig, self.aad_audiences)
            if not ok:
                raise CosmosError(401, "Unauthorized", f"Failed to validate AAD token ({why}). "
                                  "Request is blocked because principal does not have the required token.")
            return
        if typ != "master":
            raise CosmosError(401, "Unauthorized", "Resource tokens are not supported by this emulator.")
        x_date = req.header("x-ms-date", "")
        date = req.header("date", "")
        if not x_date and not date:
            raise CosmosError(401, "Unauthorized", "The input authorization token can't serve the request. "
                              "Required header x-ms-date or date is missing.")
        try:
            t = _date_ts(x_date or date)
            if abs(t - time.time()) > DATE_SKEW_S:
                raise CosmosError(403, "Forbidden", "The authorization token is not valid at the current time. "
                                  f"Please create another token and retry (token start time: {x_date or date}, "
                                  f"current time: {http_date()}).")
        except (TypeError, ValueError):
            raise CosmosError(401, "Unauthorized", f"The input date header is invalid format: '{x_date or date}'.")
        n = len(seg)
        if n == 0:
            rtype, link = "", ""
        elif n % 2 == 1:
            rtype, link = seg[-1], "/".join(seg[:-1])
        else:
            rtype, link = seg[-2], "/".join(seg)
        # With x-ms-date present the last slot is empty (the service signs with x-ms-date);
        # without it, the Date header goes in the last slot.
        payload = string_to_sign(req.method, rtype, link, x_date, "" if x_date else date)
        expected = base64.b64encode(hmac.new(_key_bytes(self.key), payload.encode(),
                                             hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, sig):
            shown = payload.replace("\n", "\\n")
            raise CosmosError(401, "Unauthorized",
                              "The input authorization token can't serve the request. The wrong key is being used "
                              "or the expected payload is not built as per the protocol. For more info: "
                              "https://aka.ms/cosmosdb-tsg-mac-token. Server used the following payload to sign: "
                              f"'{shown}'")

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, req: Request, op: str) -> Response:
        seg = self._segments(req)
        try:
            if not req.header("x-ms-version"):
                raise CosmosError(400, "BadRequest", "Required header 'x-ms-version' is missing.")
            self._auth(req, seg)
            with self.lock:
                return self._route(req, seg, op)
        except CosmosError as e:
            return self._error(req, e)

    def _body(self, req) -> dict:
        try:
            obj = json.loads(req.body or b"{}")
        except ValueError:
            raise CosmosError(400, "BadRequest", "The request payload is invalid. Ensure to provide a valid "
                              "request payload.")
        if not isinstance(obj, dict):
            raise CosmosError(400, "BadRequest", "The request payload is invalid.")
        return obj

    def _route(self, req, seg, op) -> Response:
        n = len(seg)
        if n == 0:
            if req.method != "GET":
                raise CosmosError(405, "MethodNotAllowed", "Method not allowed")
            return self._json(req, 200, self.account(), {"x-ms-max-media-storage-usage-mb": "10240",
                                                         "x-ms-media-storage-usage-mb": "0"})
        if seg[0] != "dbs":
            raise CosmosError(404, "NotFound", "Resource Not Found")
        if n == 1:
            if req.method == "POST" and op == "CreateDatabase":
                return self.create_db(req)
            if op.startswith("Query") or req.method == "GET":
                dbs = [d.props() for d in self.dbs.values()]
                return self._json(req, 200, {"_rid": "", "Databases": dbs, "_count": len(dbs)},
                                  {"x-ms-item-count": str(len(dbs))})
        db = self.dbs.get(seg[1])
        if db is None:
            raise CosmosError(404, "NotFound", "Resource Not Found. Learn more: https://aka.ms/cosmosdb-tsg-not-found")
        if n == 2:
            if req.method == "GET":
                return self._json(req, 200, db.props(), {"etag": db.etag})
            if req.method == "DELETE":
                del self.dbs[db.id]
                return Response(204, b"", self._headers(req))
        if n >= 3 and seg[2] != "colls":
            raise CosmosError(404, "NotFound", "Resource Not Found")
        if n == 3:
            if op == "CreateContainer":
                return self.create_coll(req, db)
            cs = [c.props() for c in db.colls.values()]
            return self._json(req, 200, {"_rid": _b64rid(db.rid), "DocumentCollections": cs, "_count": len(cs)},
                              {"x-ms-item-count": str(len(cs))})
        coll = db.colls.get(seg[3])
        if coll is None:
            raise CosmosError(404, "NotFound", "Resource Not Found. Learn more: https://aka.ms/cosmosdb-tsg-not-found")
        coll_path = f"dbs/{db.id}/colls/{coll.id}"
        if n == 4:
            if req.method == "GET":
                return self._json(req, 200, coll.props(), {"etag": coll.etag, "x-ms-alt-content-path": f"dbs/{db.id}",
                                                           "x-ms-content-path": _b64rid(db.rid)})
            if req.method == "DELETE":
                del db.colls[coll.id]
                return Response(204, b"", self._headers(req))
            if req.method == "PUT":
                body = self._body(req)
                if "defaultTtl" in body:
                    coll.default_ttl = body["defaultTtl"]
                else:
                    coll.default_ttl = None
                coll.etag = f'"{uuid.uuid4()}"'
                return self._json(req, 200, coll.props(), {"etag": coll.etag})
        kind = seg[4]
        if kind == "pkranges" and n == 5:
            return self.pkranges(req, db, coll)
        if kind != "docs":
            raise CosmosError(404, "NotFound", "Resource Not Found")
        extra = {"x-ms-alt-content-path": coll_path, "x-ms-content-path": _b64rid(coll.rid),
                 "x-ms-documentdb-partitionkeyrangeid": "0"}
        if n == 5:
            if op in ("CreateDocument", "UpsertDocument"):
                return self.write_doc(req, coll, extra, upsert=op == "UpsertDocument")
            if op.startswith("Query") or op.startswith("ReadFeed"):
                return self.query_docs(req, coll, extra)
        if n == 6:
            return self.doc_op(req, coll, seg[5], extra)
        raise CosmosError(405, "MethodNotAllowed", "Method not allowed")

    # ------------------------------------------------------------------ resources
    def account(self):
        loc = [{"name": "South Central US", "databaseAccountEndpoint": self.url + "/"}]
        qcfg = {"maxSqlQueryInputLength": 262144, "maxJoinsPerSqlQuery": 5, "maxLogicalAndPerSqlQuery": 500,
                "maxLogicalOrPerSqlQuery": 500, "maxUdfRefPerSqlQuery": 10, "maxInExpressionItemsCount": 16000,
                "queryMaxInMemorySortDocumentCount": 500, "maxQueryRequestTimeoutFraction": 0.9,
                "sqlAllowNonFiniteNumbers": False, "sqlAllowAggregateFunctions": True, "sqlAllowSubQuery": True,
                "sqlAllowScalarSubQuery": True, "allowNewKeywords": True, "sqlAllowLike": True,
                "sqlAllowGroupByClause": True, "maxSpatialQueryCells": 12, "spatialMaxGeometryPointCount": 256,
                "sqlDisableOptimizationFlags": 0, "sqlAllowTop": True, "enableSpatialIndexing": True}
        return {"_self": "", "id": "localhost", "_rid": "localhost", "media": "//media/", "addresses": "//addresses/",
                "_dbs": "//dbs/", "writableLocations": loc, "readableLocations": loc,
                "enableMultipleWriteLocations": False, "continuousBackupEnabled": False,
                "enableNRegionSynchronousCommit": False,
                "userReplicationPolicy": {"asyncReplication": False, "minReplicaSetSize": 1, "maxReplicasetSize": 4},
                "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
                "systemReplicationPolicy": {"minReplicaSetSize": 1, "maxReplicasetSize": 4},
                "readPolicy": {"primaryReadCoefficient": 1, "secondaryReadCoefficient": 1},
                "queryEngineConfiguration": json.dumps(qcfg)}

    @staticmethod
    def _check_name(name, what="name", limit=255):
        if not isinstance(name, str) or name == "" or any(c in name for c in "/\\?#\t\r\n") or name.endswith(" "):
            raise CosmosError(400, "BadRequest", f"The input name '{name}' is invalid. Ensure to provide a unique "
                              f"non-empty string less than '{limit + 1}' characters. Ensure to not use any "
                              "forbidden characters (/\\?#) or a trailing space.")
        too_long = len(name) > limit if limit == 255 else len(name.encode("utf-8")) > limit
        if too_long:
            raise CosmosError(400, "BadRequest", f"The input name '{name[:40]}...' is invalid. Ensure to provide "
                              f"a unique non-empty string less than '{limit + 1}' characters.")

    def create_db(self, req):
        body = self._body(req)
        self._check_name(body.get("id"))
        if body["id"] in self.dbs:
            raise CosmosError(409, "Conflict", "Entity with the specified id already exists in the system.")
        self.db_seq += 1
        db = Database(body, struct.pack("<I", self.db_seq + 0x1000))
        self.dbs[db.id] = db
        return self._json(req, 201, db.props(), {"etag": db.etag})

    def create_coll(self, req, db: Database):
        body = self._body(req)
        self._check_name(body.get("id"))
        if body["id"] in db.colls:
            raise CosmosError(409, "Conflict", "Entity with the specified id already exists in the system.")
        ttl = body.get("defaultTtl")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl == 0 or ttl < -1):
            raise CosmosError(400, "BadRequest", "The value of collection default TTL must be -1 or a positive "
                              "integer.")
        pk = body.get("partitionKey")
        if pk is not None and (not isinstance(pk, dict) or not pk.get("paths")):
            raise CosmosError(400, "BadRequest", "Invalid partition key definition.")
        db.coll_seq += 1
        c = Container(db, body, db.rid + struct.pack("<I", db.coll_seq))
        db.colls[c.id] = c
        return self._json(req, 201, c.props(), {"etag": c.etag})

    def pkranges(self, req, db, coll: Container):
        if req.header("If-None-Match") == coll.pkr_etag:
            return Response(304, b"", self._headers(req, {"etag": coll.pkr_etag}))
        r = {"_rid": _b64rid(coll.rid + b"\x00" * 4 + struct.pack(">I", 1)), "id": "0", "_etag": '"pkr0"',
             "minInclusive": "", "maxExclusive": "FF", "ridPrefix": 0,
             "_self": f"dbs/{_b64rid(db.rid)}/colls/{_b64rid(coll.rid)}/pkranges/0/",
             "throughputFraction": 1, "status": "online", "parents": [], "ownedArchivalPKRangeIds": [],
             "_ts": coll.ts, "_lsn": 1}
        return self._json(req, 200, {"_rid": _b64rid(coll.rid), "PartitionKeyRanges": [r], "_count": 1},
                          {"etag": coll.pkr_etag, "x-ms-item-count": "1"})

    # ------------------------------------------------------------------ documents
    @staticmethod
    def _pk_from_doc(coll: Container, doc: dict):
        vals = []
        for path in coll.pk["paths"]:
            cur = doc
            for part in path.strip("/").split("/"):
                if isinstance(cur, dict) and part in cur:
                    cur = cur[part]
                else:
                    cur = {}  # "undefined" is encoded by the SDK as {}
                    break
            vals.append(cur)
        return vals

    @staticmethod
    def _pk_header(req, coll):
        raw = req.header("x-ms-documentdb-partitionkey")
        if raw is None:
            return None
        try:
            v = json.loads(raw)
        except ValueError:
            raise CosmosError(400, "BadRequest", f"Partition key {raw} is invalid.")
        if not isinstance(v, list):
            raise CosmosError(400, "BadRequest", f"Partition key {raw} is invalid.")
        if len(v) != len(coll.pk["paths"]):
            raise CosmosError(400, "BadRequest", "Partition key provided either doesn't correspond to definition "
                              "in the collection or doesn't match partition key field values specified in the "
                              "document.")
        return v

    @staticmethod
    def _pkkey(v) -> str:
        return json.dumps(v, separators=(",", ":"), sort_keys=True)

    def _expired(self, coll: Container, doc: dict, now=None) -> bool:
        if coll.default_ttl is None:
            return False
        ttl = doc.get("ttl", coll.default_ttl)
        if ttl is None or ttl == -1:
            return False
        return (now or time.time()) >= doc["_ts"] + ttl

    def _live(self, coll: Container, key):
        doc = coll.docs.get(key)
        if doc is not None and self._expired(coll, doc):
            del coll.docs[key]
            return None
        return doc

    def write_doc(self, req, coll: Container, extra, upsert=False, existing_key=None):
        if len(req.body) > MAX_ITEM_BYTES:
            raise CosmosError(413, "RequestEntityTooLarge", "Request size is too large")
        body = self._body(req)
        doc_id = body.get("id")
        if not isinstance(doc_id, str):
            raise CosmosError(400, "BadRequest", "The input content is invalid because the required properties "
                              "- 'id; ' - are missing")
        self._check_name(doc_id, limit=MAX_ID_BYTES)
        if "ttl" in body and body["ttl"] is not None:
            t = body["ttl"]
            if not isinstance(t, int) or isinstance(t, bool) or t == 0 or t < -1:
                raise CosmosError(400, "BadRequest", "The value of ttl must be either -1 or a positive integer.")
        pk_doc = self._pk_from_doc(coll, body)
        pk_hdr = self._pk_header(req, coll)
        if pk_hdr is not None and self._pkkey(pk_hdr) != self._pkkey(pk_doc):
            raise CosmosError(400, "BadRequest", "PartitionKey extracted from document doesn't match the one "
                              "specified in the header. Learn more: https://aka.ms/CosmosDB/sql/errors/wrong-pk-value")
        key = (self._pkkey(pk_doc), doc_id)
        if existing_key is not None and existing_key != key:
            raise CosmosError(400, "BadRequest", "Replacing id or partition key of a document is not allowed.")
        cur = self._live(coll, key)
        if cur is not None and not upsert and existing_key is None:
            raise CosmosError(409, "Conflict", "Entity with the specified id already exists in the system.")
        if existing_key is not None and cur is None:
            raise CosmosError(404, "NotFound", "Entity with the specified id does not exist in the system.")
        if_match = req.header("If-Match")
        if if_match and (cur is None or cur["_etag"] != if_match):
            raise CosmosError(412, "PreconditionFailed", "Operation cannot be performed because one of the "
                              "specified precondition is not met.")
        for k in list(body):
            if k in ("_rid", "_self", "_etag", "_ts", "_attachments"):
                del body[k]
        if cur is not None:
            rid = cur["_rid"]
        else:
            coll.doc_seq += 1
            rid = _b64rid(coll.rid + struct.pack("<Q", coll.doc_seq))
        body.update({"_rid": rid, "_self": f"dbs/{_b64rid(coll.db.rid)}/colls/{_b64rid(coll.rid)}/docs/{rid}/",
                     "_etag": f'"{uuid.uuid4()}"', "_attachments": "attachments/", "_ts": int(time.time())})
        encoded = json.dumps(body, separators=(",", ":")).encode()
        if len(encoded) > MAX_ITEM_BYTES:
            raise CosmosError(413, "RequestEntityTooLarge", "Request size is too large")
        coll.docs[key] = body
        status = 201 if cur is None else 200
        charge = f"{max(5.0, round(len(encoded) / 1024 * 5.5, 2))}"
        h = dict(extra, etag=body["_etag"], **{"x-ms-request-charge": charge})
        if req.header("Prefer", "") == "return=minimal":
            return Response(status, b"", self._headers(req, h))
        return Response(status, encoded, self._headers(req, h))

    def doc_op(self, req, coll: Container, doc_id, extra):
        pk = self._pk_header(req, coll)
        if pk is None:
            raise CosmosError(400, "BadRequest", "The partition key supplied in x-ms-partitionkey header has fewer "
                              "components than defined in the the collection.")
        key = (self._pkkey(pk), doc_id)
        if req.method == "PUT":
            return self.write_doc(req, coll, extra, existing_key=key)
        doc = self._live(coll, key)
        if doc is None:
            raise CosmosError(404, "NotFound", "Entity with the specified id does not exist in the system. More "
                              "info: https://aka.ms/cosmosdb-tsg-not-found", extra)
        if req.method == "GET":
            if req.header("If-None-Match") == doc["_etag"]:
                return Response(304, b"", self._headers(req, dict(extra, etag=doc["_etag"])))
            return self._json(req, 200, doc, dict(extra, etag=doc["_etag"]))
        if req.method == "DELETE":
            im = req.header("If-Match")
            if im and im != doc["_etag"]:
                raise CosmosError(412, "PreconditionFailed", "Operation cannot be performed because one of the "
                                  "specified precondition is not met.")
            del coll.docs[key]
            return Response(204, b"", self._headers(req, extra))
        raise CosmosError(405, "MethodNotAllowed", "Method not allowed")

    @staticmethod
    def _doc_seq(doc: dict) -> int:
        """The creation sequence number inside a document's _rid (its position in the feed)."""
        return struct.unpack("<Q", base64.b64decode(doc["_rid"].replace("-", "/"))[-8:])[0]

    @staticmethod
    def _page_size(req) -> int | None:
        raw = req.header("x-ms-max-item-count")
        if raw is None:
            return None
        try:
            n = int(raw)
        except ValueError:
            raise CosmosError(400, "BadRequest", f"Invalid value for header x-ms-max-item-count: '{raw}'.")
        if n == -1:
            return None  # "let the service decide": this emulator returns everything
        if n < 1:
            raise CosmosError(400, "BadRequest", f"Invalid value for header x-ms-max-item-count: '{raw}'.")
        return n

    @staticmethod
    def _resume_after(req) -> int:
        """The feed position a continuation token names (the service's tokens are opaque JSON)."""
        raw = req.header("x-ms-continuation")
        if not raw:
            return 0
        try:
            return int(json.loads(raw)["token"])
        except (ValueError, KeyError, TypeError):
            raise CosmosError(400, "BadRequest", "Invalid Continuation Token")

    def query_docs(self, req, coll: Container, extra):
        """Read feed / trivial query: returns the live documents (optionally of one partition) in
        creation order, `x-ms-max-item-count` per page with an `x-ms-continuation` token for the
        rest. A token is a position in that order, so deleting documents does not shift pages.
        Only `SELECT * FROM c` (with optional WHERE c.id = @id) is understood."""
        pk = self._pk_header(req, coll) if req.header("x-ms-documentdb-partitionkey") else None
        page_size = self._page_size(req)
        after = self._resume_after(req)
        docs = []
        want_id = None
        if req.method == "POST":
            q = self._body(req)
            for p in q.get("parameters", []) or []:
                if p.get("name") == "@id":
                    want_id = p.get("value")
        for (pkk, did), d in list(coll.docs.items()):
            if self._expired(coll, d):
                del coll.docs[(pkk, did)]
                continue
            if pk is not None and pkk != self._pkkey(pk):
                continue
            if want_id is not None and did != want_id:
                continue
            if self._doc_seq(d) <= after:
                continue
            docs.append(d)
        docs.sort(key=self._doc_seq)
        headers = dict(extra)
        if page_size is not None and len(docs) > page_size:
            docs = docs[:page_size]
            token = {"token": str(self._doc_seq(docs[-1])), "range": {"min": "", "max": "FF"}}
            headers["x-ms-continuation"] = json.dumps(token, separators=(",", ":"))
        headers["x-ms-item-count"] = str(len(docs))
        return self._json(req, 200, {"_rid": _b64rid(coll.rid), "Documents": docs, "_count": len(docs)}, headers)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args(argv)
    emu = CosmosEmulator(a.host, a.port, tls=a.tls).start()
    print(f"READY cosmos {emu.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emu.stop()


if __name__ == "__main__":
    main()
