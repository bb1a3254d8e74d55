"""Prove the test emulators faithful by driving them with Microsoft's own Python SDKs.

Run: python3 -m pytest -q Tests/integration/test_emulators_sdk.py   (from the repo root)
Needs: pip install azure-cosmos azure-storage-blob pytest
"""
from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from functools import cmp_to_key

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from Tests.emulators import blob as blob_emu  # noqa: E402
from Tests.emulators import cosmos as cosmos_emu  # noqa: E402
from Tests.emulators.harness import EmulatorProcess  # noqa: E402

azure_cosmos = pytest.importorskip("azure.cosmos")
pytest.importorskip("azure.storage.blob")

from azure.core.credentials import AccessToken  # noqa: E402
from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,  # noqa: E402
                                   ResourceExistsError, ResourceNotFoundError)
from azure.cosmos import CosmosClient, PartitionKey, exceptions as cosmos_exc  # noqa: E402
from azure.storage.blob import (AccountSasPermissions, BlobClient, BlobSasPermissions,  # noqa: E402
                                BlobServiceClient, ContentSettings, LinearRetry, ResourceTypes,
                                generate_account_sas, generate_blob_sas)

DOCS_KEY = "dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw=="
DOCS_DATE = "Thu, 27 Apr 2017 00:51:12 GMT"
DOCS_SIG = "c09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu+c+c="
BAD_KEY = base64.b64encode(b"\x01" * 64).decode()


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def emu():
    with EmulatorProcess() as e:
        yield e


@pytest.fixture(scope="module")
def emu_tls():
    with EmulatorProcess(tls=True) as e:
        yield e


@pytest.fixture(autouse=True)
def _clean_faults(request):
    yield
    for name in ("emu", "emu_tls"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


def _uid(prefix="t"):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def cosmos(emu):
    client = CosmosClient(emu.cosmos_url, credential=emu.cosmos_key)
    db = client.create_database_if_not_exists("memory")
    return client, db


@pytest.fixture()
def container(cosmos):
    _, db = cosmos
    return db.create_container(_uid("state"), partition_key=PartitionKey(path="/pk"), default_ttl=-1)


@pytest.fixture(scope="module")
def blob_service(emu):
    svc = BlobServiceClient.from_connection_string(emu.blob_connection_string)
    svc.create_container("memory")
    return svc


def poll(fn, deadline_s=10.0, interval=0.05):
    """Call fn until it returns truthy or the deadline passes (returns the last value)."""
    end = time.monotonic() + deadline_s
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(interval)


# ----------------------------------------------------------------------------- known-answer tests
def test_cosmos_signature_matches_microsoft_docs_vector():
    assert cosmos_emu.sign(DOCS_KEY, "GET", "dbs", "dbs/ToDoList", DOCS_DATE) == DOCS_SIG


def test_cosmos_sdk_signing_function_agrees_with_emulator():
    from azure.cosmos import auth as sdk_auth

    class Conn:
        master_key = DOCS_KEY
        resource_tokens = None

    hdr = sdk_auth._get_authorization_header(Conn(), "GET", "/dbs/ToDoList/", "dbs/ToDoList", True, "dbs",
                                             {"x-ms-date": DOCS_DATE})
    assert hdr == f"type=master&ver=1.0&sig={DOCS_SIG}"
    date = formatdate(usegmt=True)
    for verb, rtype, link in [("POST", "docs", "dbs/memory/colls/state"),
                              ("GET", "docs", "dbs/memory/colls/state/docs/Key With Space"),
                              ("DELETE", "docs", "dbs/Mixed/colls/Case/docs/ABC"),
                              ("GET", "", ""), ("GET", "pkranges", "dbs/memory/colls/state")]:
        Conn.master_key = cosmos_emu.WELL_KNOWN_KEY
        hdr = sdk_auth._get_authorization_header(Conn(), verb, "", link, True, rtype, {"x-ms-date": date})
        assert hdr.rsplit("sig=", 1)[1] == cosmos_emu.sign(cosmos_emu.WELL_KNOWN_KEY, verb, rtype, link, date)


def _sdk_shared_key_request(url, method, headers):
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.rest import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    req = HttpRequest(method, url, headers=headers)
    SharedKeyCredentialPolicy(blob_emu.ACCOUNT, blob_emu.WELL_KNOWN_KEY).on_request(
        PipelineRequest(req, PipelineContext(None)))
    return req


@pytest.mark.parametrize("method,path,query,headers", [
    ("PUT", "/devstoreaccount1/memory/k1", "", {"x-ms-blob-type": "BlockBlob", "Content-Length": "5",
                                               "Content-Type": "application/octet-stream"}),
    ("PUT", "/devstoreaccount1/memory/a%20b/c%2Bd", "comp=block&blockid=QUFBQQ%3D%3D", {"Content-Length": "3"}),
    ("GET", "/devstoreaccount1/memory/k", "", {"x-ms-range": "bytes=0-9", "If-None-Match": '"0x1"'}),
    ("PUT", "/devstoreaccount1/memory", "restype=container", {"Content-Length": "0"}),
    ("HEAD", "/devstoreaccount1/memory/k", "",
     {"x-ms-meta-a-b": "1", "x-ms-meta-ab": "2", "x-ms-meta-a_c": "3", "x-ms-meta-a0": "4",
      "x-ms-client-request-id": "x", "x-ms-blob-content-encoding": "gzip"}),
])
def test_blob_sdk_shared_key_signature_agrees_with_emulator(method, path, query, headers):
    date = formatdate(usegmt=True)
    headers = dict(headers, **{"x-ms-date": date, "x-ms-version": "2021-08-06"})
    url = f"http://127.0.0.1:1{path}" + (f"?{query}" if query else "")
    req = _sdk_shared_key_request(url, method, headers)
    sdk_sig = req.headers["Authorization"].split(":", 1)[1]
    from email.message import Message
    m = Message()
    for k, v in req.headers.items():
        if k.lower() != "authorization":
            m[k] = v
    sts = blob_emu.shared_key_string_to_sign(method, path, query, m)
    assert blob_emu.sign(blob_emu.WELL_KNOWN_KEY, sts) == sdk_sig, sts


def test_blob_header_collation_matches_sdk_sort():
    from azure.storage.blob._shared.authentication import _storage_header_sort
    names = ["x-ms-meta-a-b", "x-ms-meta-ab", "x-ms-meta-a_c", "x-ms-meta-a0", "x-ms-date", "x-ms-version",
             "x-ms-blob-type", "x-ms-blob-content-type", "x-ms-range", "x-ms-range-get-content-md5", "x-ms-meta-a"]
    expected = [k for k, _ in _storage_header_sort([(n, "") for n in names])]
    assert sorted(names, key=cmp_to_key(blob_emu._collate)) == expected
    assert expected != sorted(names)  # the collation is not ordinal order


def test_blob_sas_string_to_sign_agrees_with_sdk():
    exp = datetime(2030, 1, 1, tzinfo=timezone.utc)
    seen = []
    tok = generate_blob_sas(blob_emu.ACCOUNT, "memory", "dir/k 1", account_key=blob_emu.WELL_KNOWN_KEY,
                            permission=BlobSasPermissions(read=True, write=True), expiry=exp,
                            content_encoding="gzip", sts_hook=seen.append)
    q = dict(urllib.parse.parse_qsl(tok))
    assert blob_emu.service_sas_string_to_sign(q, "memory", "dir/k 1") == seen[0]
    assert blob_emu.sign(blob_emu.WELL_KNOWN_KEY, seen[0]) == q["sig"]
    seen.clear()
    tok = generate_account_sas(blob_emu.ACCOUNT, blob_emu.WELL_KNOWN_KEY, ResourceTypes(object=True),
                               AccountSasPermissions(read=True), exp, sts_hook=seen.append)
    q = dict(urllib.parse.parse_qsl(tok))
    assert blob_emu.account_sas_string_to_sign(q) == seen[0]
    assert blob_emu.sign(blob_emu.WELL_KNOWN_KEY, seen[0]) == q["sig"]


# ----------------------------------------------------------------------------- Cosmos via azure-cosmos
def test_cosmos_crud_with_system_properties(emu, container):
    c = container
    body = c.upsert_item({"id": "k1", "pk": "k1", "value": "v1", "ttl": 300})
    for p in ("_rid", "_self", "_etag", "_ts", "_attachments"):
        assert p in body
    emu.reset_stats()
    got = c.read_item("k1", partition_key="k1")
    assert got["value"] == "v1" and got["_etag"] == body["_etag"]
    ops = emu.ops("cosmos")
    assert ops["ReadDocument"] == 1  # exactly one read happened
    # The SDK maps the session token to a range, and refreshes the account's endpoints in the
    # background on its own schedule (GetDatabaseAccount), which may fall inside this window.
    assert set(ops) <= {"ReadDocument", "ReadPartitionKeyRanges", "GetDatabaseAccount"}
    hdrs = c.client_connection.last_response_headers
    assert float(hdrs["x-ms-request-charge"]) > 0 and hdrs["x-ms-session-token"] and hdrs["x-ms-activity-id"]
    c.replace_item("k1", {"id": "k1", "pk": "k1", "value": "v2"})
    assert c.read_item("k1", partition_key="k1")["value"] == "v2"
    c.upsert_item({"id": "k1", "pk": "k1", "value": "v3"})
    assert c.read_item("k1", partition_key="k1")["value"] == "v3"
    with pytest.raises(cosmos_exc.CosmosResourceExistsError):
        c.create_item({"id": "k1", "pk": "k1", "value": "dup"})
    c.delete_item("k1", partition_key="k1")
    with pytest.raises(cosmos_exc.CosmosResourceNotFoundError):
        c.read_item("k1", partition_key="k1")
    with pytest.raises(cosmos_exc.CosmosResourceNotFoundError):
        c.delete_item("k1", partition_key="k1")
    with pytest.raises(cosmos_exc.CosmosResourceNotFoundError):
        c.replace_item("k1", {"id": "k1", "pk": "k1", "value": "x"})
    odd = "key with space, ünïcödé & 'quotes'"
    c.upsert_item({"id": odd, "pk": odd, "value": "odd"})
    assert c.read_item(odd, partition_key=odd)["value"] == "odd"
    c.delete_item(odd, partition_key=odd)
    with pytest.raises(cosmos_exc.CosmosHttpResponseError) as ei:
        c.upsert_item({"id": "x" * 1024, "pk": "p"})
    assert ei.value.status_code == 400
    s = emu.stats("cosmos")
    assert s["responses"]["DeleteDocument"] == {"204": 2, "404": 1}
    assert s["responses"]["UpsertDocument"] == {"200": 1, "201": 1, "400": 1}


def test_cosmos_partition_key_and_etag_rules(container):
    c = container
    c.create_item({"id": "same", "pk": "a", "value": 1})
    c.create_item({"id": "same", "pk": "b", "value": 2})  # same id, other partition: fine
    assert c.read_item("same", partition_key="b")["value"] == 2
    with pytest.raises(cosmos_exc.CosmosResourceNotFoundError):
        c.read_item("same", partition_key="c")
    from azure.core import MatchConditions
    stale = c.read_item("same", partition_key="a")
    c.upsert_item({"id": "same", "pk": "a", "value": 3})
    with pytest.raises(cosmos_exc.CosmosAccessConditionFailedError):
        c.replace_item("same", {"id": "same", "pk": "a", "value": 4}, etag=stale["_etag"],
                       match_condition=MatchConditions.IfNotModified)
    assert sorted(d["value"] for d in c.query_items("SELECT * FROM c", enable_cross_partition_query=True)) == [2, 3]


def test_cosmos_feed_pages_follow_continuations_even_across_deletes(emu, container):
    c = container
    for i in range(7):
        c.create_item({"id": f"d{i}", "pk": f"p{i % 3}", "value": i})
    emu.reset_stats()
    pages = [[d["value"] for d in page] for page in c.read_all_items(max_item_count=3).by_page()]
    assert pages == [[0, 1, 2], [3, 4, 5], [6]]
    assert emu.ops("cosmos") == {"ReadFeedDocuments": 3}
    # Deleting what was already read does not make the next page skip anything.
    seen = []
    for page in c.read_all_items(max_item_count=2).by_page():
        for d in page:
            seen.append(d["value"])
            c.delete_item(d["id"], partition_key=d["pk"])
    assert seen == list(range(7)) and list(c.read_all_items()) == []


def test_cosmos_container_default_ttl_and_item_ttl_expiry(cosmos):
    _, db = cosmos
    c = db.create_container(_uid("ttl"), partition_key=PartitionKey(path="/pk"), default_ttl=-1)
    props = c.read()
    assert props["defaultTtl"] == -1 and props["partitionKey"]["paths"] == ["/pk"]
    c.upsert_item({"id": "short", "pk": "short", "value": "x", "ttl": 1})
    c.upsert_item({"id": "forever", "pk": "forever", "value": "y"})
    nottl = db.create_container(_uid("nottl"), partition_key=PartitionKey(path="/pk"))
    nottl.upsert_item({"id": "short", "pk": "short", "value": "x", "ttl": 1})  # ttl ignored without default

    def gone():
        try:
            c.read_item("short", partition_key="short")
            return False
        except cosmos_exc.CosmosResourceNotFoundError:
            return True
    assert poll(gone, deadline_s=5.0), "item with ttl=1 still readable after 5 s"
    assert c.read_item("forever", partition_key="forever")["value"] == "y"
    assert nottl.read_item("short", partition_key="short")["value"] == "x"
    with pytest.raises(cosmos_exc.CosmosHttpResponseError) as ei:
        c.upsert_item({"id": "bad", "pk": "bad", "ttl": 0})
    assert ei.value.status_code == 400


def test_cosmos_item_over_2mb_is_413(container):
    with pytest.raises(cosmos_exc.CosmosHttpResponseError) as ei:
        container.upsert_item({"id": "big", "pk": "big", "value": "x" * (2 * 1024 * 1024 + 10)})
    assert ei.value.status_code == 413
    container.upsert_item({"id": "fits", "pk": "fits", "value": "x" * (2 * 1024 * 1024 - 1024)})
    assert len(container.read_item("fits", partition_key="fits")["value"]) == 2 * 1024 * 1024 - 1024


def test_cosmos_wrong_key_is_401(emu):
    with pytest.raises(cosmos_exc.CosmosHttpResponseError) as ei:
        CosmosClient(emu.cosmos_url, credential=BAD_KEY)
    assert ei.value.status_code == 401
    assert "Server used the following payload to sign" in str(ei.value)


def test_cosmos_unencoded_authorization_is_rejected(emu):
    """The service URL-decodes the header (+ means space): an unencoded signature with '+' fails."""
    date = formatdate(usegmt=True)
    for _ in range(50):
        sig = cosmos_emu.sign(cosmos_emu.WELL_KNOWN_KEY, "GET", "", "", date)
        if "+" in sig:
            break
        time.sleep(1.0)
        date = formatdate(usegmt=True)
    else:
        pytest.skip("no '+' in signatures")
    base = {"x-ms-date": date, "x-ms-version": "2018-12-31"}
    ok = urllib.request.Request(emu.cosmos_url + "/", headers=dict(
        base, authorization=urllib.parse.quote(f"type=master&ver=1.0&sig={sig}", safe="-_.!~*'()")))
    assert urllib.request.urlopen(ok, timeout=5).status == 200
    bad = urllib.request.Request(emu.cosmos_url + "/", headers=dict(base, authorization=f"type=master&ver=1.0&sig={sig}"))
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(bad, timeout=5)
    assert ei.value.code == 401


def test_cosmos_sdk_retry_on_429_honours_retry_after(emu, container):
    container.upsert_item({"id": "hot", "pk": "hot", "value": 1})
    emu.reset_stats()
    emu.add_fault("cosmos", kind="throttle", count=2, retry_after_ms=300, op="ReadDocument")
    t0 = time.monotonic()
    assert container.read_item("hot", partition_key="hot")["value"] == 1
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.55, f"SDK retried after {elapsed:.3f}s, not honouring x-ms-retry-after-ms"
    s = emu.stats("cosmos")
    assert s["ops"]["ReadDocument"] == 3
    assert s["responses"]["ReadDocument"] == {"429": 2, "200": 1}


def test_cosmos_503_fault_surfaces_as_sdk_error(emu, container):
    container.upsert_item({"id": "w", "pk": "w", "value": 1})
    emu.add_fault("cosmos", kind="status", status=503, count=None, op="ReplaceDocument")
    with pytest.raises(cosmos_exc.CosmosHttpResponseError) as ei:
        container.replace_item("w", {"id": "w", "pk": "w", "value": 2})
    assert ei.value.status_code == 503


class EmulatorCredential:
    """A minimal azure-core TokenCredential using the identity emulator's AAD v2 client-secret flow."""

    def __init__(self, emu):
        self.emu = emu
        self.calls = []

    def get_token(self, *scopes, **kwargs):
        self.calls.append(scopes)
        i = self.emu.info
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": i["client_id"],
                                       "client_secret": i["client_secret"], "scope": scopes[0]}).encode()
        req = urllib.request.Request(f"{i['authority_host']}{i['tenant_id']}/oauth2/v2.0/token", data=form,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        ctx = ssl.create_default_context(cafile=i["ca_cert"]) if "ca_cert" in i else None
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            body = json.load(r)
        return AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))


def test_cosmos_aad_token_over_tls(emu_tls):
    cred = EmulatorCredential(emu_tls)
    from azure.cosmos.documents import SSLConfiguration
    # the SDK skips certificate checks for 127.0.0.1 unless an ssl_config is given: verify against our CA
    client = CosmosClient(emu_tls.cosmos_url, credential=cred, ssl_config=SSLConfiguration(),
                          connection_verify=emu_tls.info["ca_cert"])
    db = client.create_database_if_not_exists("memory")
    c = db.create_container_if_not_exists("aad", partition_key=PartitionKey(path="/pk"))
    c.upsert_item({"id": "a", "pk": "a", "value": "via-aad"})
    assert c.read_item("a", partition_key="a")["value"] == "via-aad"
    assert cred.calls and cred.calls[0][0].endswith("/.default")
    assert emu_tls.stats("cosmos")["auth_failures"] == 0


# ----------------------------------------------------------------------------- Blob via azure-storage-blob
def test_blob_connection_string_small_upload_download_metadata_delete(emu, blob_service):
    bc = blob_service.get_blob_client("memory", _uid("k"))
    emu.reset_stats()
    bc.upload_blob(b"hello world", metadata={"tier": "cold", "k": "v"},
                   content_settings=ContentSettings(content_type="application/octet-stream"))
    assert emu.ops("blob") == {"PutBlob": 1}  # single put
    assert bc.download_blob().readall() == b"hello world"
    assert bc.download_blob(offset=6, length=5).readall() == b"world"
    assert "206" in emu.stats("blob")["responses"]["GetBlob"]
    p = bc.get_blob_properties()
    assert p.metadata == {"tier": "cold", "k": "v"} and p.size == 11 and p.etag and p.last_modified
    assert p.content_settings.content_type == "application/octet-stream"
    with pytest.raises(ResourceExistsError):
        bc.upload_blob(b"again")  # overwrite=False sends If-None-Match: *
    bc.upload_blob(b"again", overwrite=True)
    assert bc.download_blob().readall() == b"again"
    bc.delete_blob()
    with pytest.raises(ResourceNotFoundError) as ei:
        bc.download_blob()
    assert ei.value.error_code == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError) as ei:
        blob_service.get_blob_client("nosuchcontainer", "x").upload_blob(b"x")
    assert ei.value.error_code == "ContainerNotFound"


def test_blob_list_pages_follow_next_marker_even_across_deletes(emu, blob_service):
    cont = blob_service.get_container_client(_uid("list"))
    cont.create_container()
    for i in range(7):
        cont.upload_blob(f"b{i}", b"x", metadata={"tp_db": str(i % 2)})
    emu.reset_stats()
    pages = [[(b.name, b.metadata["tp_db"]) for b in page]
             for page in cont.list_blobs(include=["metadata"], results_per_page=3).by_page()]
    assert pages == [[("b0", "0"), ("b1", "1"), ("b2", "0")], [("b3", "1"), ("b4", "0"), ("b5", "1")], [("b6", "0")]]
    assert emu.ops("blob") == {"ListBlobs": 3}
    seen = []
    for page in cont.list_blobs(results_per_page=2).by_page():
        for b in page:
            seen.append(b.name)
            cont.delete_blob(b.name)
    assert seen == [f"b{i}" for i in range(7)] and list(cont.list_blobs()) == []
    with pytest.raises(HttpResponseError) as ei:
        list(cont.list_blobs(results_per_page=0))
    assert ei.value.status_code == 400


def test_blob_account_url_and_key_block_upload(emu, blob_service):
    svc = BlobServiceClient(emu.blob_account_url, credential={"account_name": emu.blob_account,
                                                              "account_key": emu.blob_key},
                            max_single_put_size=64 * 1024, max_block_size=64 * 1024)
    bc = svc.get_blob_client("memory", f"dir/{_uid('big key ')}+é")
    data = os.urandom(300 * 1024 + 7)
    emu.reset_stats()
    bc.upload_blob(data)
    ops = emu.ops("blob")
    assert ops.get("PutBlock") == 5 and ops.get("PutBlockList") == 1 and "PutBlob" not in ops
    assert bc.download_blob().readall() == data
    assert bc.download_blob(offset=1000, length=70000).readall() == data[1000:71000]
    committed, _ = bc.get_block_list("committed")
    assert len(committed) == 5


def test_blob_sas_tokens(emu, blob_service):
    exp = datetime.now(timezone.utc) + timedelta(hours=1)
    acct_sas = generate_account_sas(emu.blob_account, emu.blob_key, ResourceTypes(object=True),
                                    AccountSasPermissions(read=True, write=True, delete=True, create=True), exp)
    name = _uid("sas")
    bc = BlobClient(emu.blob_account_url, "memory", name, credential=acct_sas)
    bc.upload_blob(b"via account sas")
    assert bc.download_blob().readall() == b"via account sas"
    ro = generate_blob_sas(emu.blob_account, "memory", name, account_key=emu.blob_key,
                           permission=BlobSasPermissions(read=True), expiry=exp)
    ro_client = BlobClient(emu.blob_account_url, "memory", name, credential=ro)
    assert ro_client.download_blob().readall() == b"via account sas"
    with pytest.raises(HttpResponseError) as ei:
        ro_client.upload_blob(b"nope", overwrite=True)
    assert ei.value.status_code == 403 and ei.value.error_code == "AuthorizationPermissionMismatch"
    forged = generate_blob_sas(emu.blob_account, "memory", name, account_key=BAD_KEY,
                               permission=BlobSasPermissions(read=True), expiry=exp)
    with pytest.raises(ClientAuthenticationError) as ei:
        BlobClient(emu.blob_account_url, "memory", name, credential=forged).download_blob()
    assert ei.value.error_code == "AuthenticationFailed"
    expired = generate_blob_sas(emu.blob_account, "memory", name, account_key=emu.blob_key,
                                permission=BlobSasPermissions(read=True),
                                expiry=datetime.now(timezone.utc) - timedelta(minutes=1))
    with pytest.raises(ClientAuthenticationError):
        BlobClient(emu.blob_account_url, "memory", name, credential=expired).download_blob()
    bc.delete_blob()


def test_blob_content_encoding_gzip_stored_and_returned(emu, blob_service):
    raw = b"value " * 2000
    gz = gzip.compress(raw)
    bc = blob_service.get_blob_client("memory", _uid("gz"))
    bc.upload_blob(gz, content_settings=ContentSettings(content_encoding="gzip",
                                                        content_type="application/octet-stream"))
    props = bc.get_blob_properties()
    assert props.content_settings.content_encoding == "gzip" and props.size == len(gz)
    d = bc.download_blob(decompress=False)
    assert d.properties.content_settings.content_encoding == "gzip"
    assert d.readall() == gz  # the stored bytes, untouched
    assert bc.download_blob().readall() == raw  # the SDK's default transparently decompresses


def test_blob_wrong_key_is_403(emu, blob_service):
    bad = BlobServiceClient(emu.blob_account_url, credential={"account_name": emu.blob_account,
                                                              "account_key": BAD_KEY})
    with pytest.raises(ClientAuthenticationError) as ei:
        bad.get_blob_client("memory", "anything").upload_blob(b"x")
    assert ei.value.status_code == 403 and ei.value.error_code == "AuthenticationFailed"
    assert "Server used following string to sign" in str(ei.value)


def test_blob_unknown_version_is_400_invalid_header_value(emu):
    req = urllib.request.Request(emu.blob_account_url + "/memory/x", headers={"x-ms-version": "2099-01-01"})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    assert ei.value.code == 400
    body = ei.value.read().decode()
    assert "<Code>InvalidHeaderValue</Code>" in body and "<HeaderName>x-ms-version</HeaderName>" in body


def test_blob_sdk_retries_server_busy_and_connection_reset(emu, blob_service):
    svc = BlobServiceClient.from_connection_string(
        emu.blob_connection_string, retry_policy=LinearRetry(backoff=0.05, random_jitter_range=0, retry_total=4))
    bc = svc.get_blob_client("memory", _uid("r"))
    bc.upload_blob(b"payload")
    emu.reset_stats()
    emu.add_fault("blob", kind="throttle", count=2, op="GetBlob")
    assert bc.download_blob().readall() == b"payload"
    assert emu.stats("blob")["responses"]["GetBlob"] == {"503": 2, "206": 1}
    emu.reset_stats()
    emu.add_fault("blob", kind="reset", count=1, op="GetBlobProperties")
    assert bc.get_blob_properties().size == 7
    assert emu.ops("blob")["GetBlobProperties"] == 2


def test_truncated_body_and_hang_are_observable(emu, blob_service):
    bc = blob_service.get_blob_client("memory", _uid("t"))
    bc.upload_blob(b"0123456789" * 100)
    sas = generate_blob_sas(emu.blob_account, "memory", bc.blob_name, account_key=emu.blob_key,
                            permission=BlobSasPermissions(read=True),
                            expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    url = f"{bc.url}?{sas}"
    hdrs = {"x-ms-version": "2021-08-06"}
    emu.add_fault("blob", kind="truncate", op="GetBlob")
    with pytest.raises(Exception):  # http.client.IncompleteRead or a reset
        urllib.request.urlopen(urllib.request.Request(url, headers=hdrs), timeout=5).read()
    emu.add_fault("blob", kind="hang", ms=3000, op="GetBlob")
    t0 = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(urllib.request.Request(url, headers=hdrs), timeout=0.5).read()
    assert time.monotonic() - t0 < 2.0
    assert urllib.request.urlopen(urllib.request.Request(url, headers=hdrs), timeout=5).read() == b"0123456789" * 100


def test_latency_is_added_per_request_and_requests_overlap(emu, blob_service):
    bc = blob_service.get_blob_client("memory", _uid("lat"))
    bc.upload_blob(b"x")
    emu.set_latency(200, services=("blob",))
    emu.reset_stats()
    t0 = time.monotonic()
    bc.get_blob_properties()
    single = time.monotonic() - t0
    assert single >= 0.2
    clients = [BlobClient.from_connection_string(emu.blob_connection_string, "memory", bc.blob_name)
               for _ in range(8)]
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda c: c.get_blob_properties(), clients))
    elapsed = time.monotonic() - t0
    assert elapsed < 8 * 0.2 * 0.6, f"8 requests with 200 ms latency took {elapsed:.2f}s: serialized?"
    assert emu.stats("blob")["max_in_flight"] >= 4


def test_blob_bearer_token_over_tls(emu_tls):
    cred = EmulatorCredential(emu_tls)
    svc = BlobServiceClient(emu_tls.blob_account_url, credential=cred, connection_verify=emu_tls.info["ca_cert"])
    cc = svc.get_container_client(_uid("aad"))
    cc.create_container()
    cc.upload_blob("k", b"via bearer")
    assert cc.download_blob("k").readall() == b"via bearer"
    assert cred.calls[0] == ("https://storage.azure.com/.default",)


# ----------------------------------------------------------------------------- identity endpoints
def _get_json(url, headers=None, data=None, ctx=None):
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, raw


def test_identity_token_endpoints_and_key_vault(emu):
    i = emu.info
    q = "?api-version=2018-02-01&resource=" + urllib.parse.quote("https://vault.azure.net")
    st, body = _get_json(i["imds"] + q)
    assert st == 400 and body["error"] == "invalid_request"
    st, body = _get_json(i["imds"] + q, {"Metadata": "true"})
    assert st == 200 and body["token_type"] == "Bearer" and int(body["expires_on"]) > time.time()
    vault_token = body["access_token"]

    q2 = "?api-version=2019-08-01&resource=" + urllib.parse.quote("https://storage.azure.com")
    st, _ = _get_json(i["identity_endpoint"] + q2, {"X-IDENTITY-HEADER": "wrong"})
    assert st == 401
    st, body = _get_json(i["identity_endpoint"] + q2, {"X-IDENTITY-HEADER": i["identity_header"]})
    assert st == 200 and body["resource"] == "https://storage.azure.com"

    tok_url = f"{i['authority_host']}{i['tenant_id']}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "client_id": i["client_id"], "scope": "https://redis.azure.com/.default"}
    ct = {"Content-Type": "application/x-www-form-urlencoded"}
    st, body = _get_json(tok_url, ct, urllib.parse.urlencode(dict(form, client_secret="nope")).encode())
    assert st == 401 and "AADSTS7000215" in body["error_description"]
    st, body = _get_json(tok_url, ct, urllib.parse.urlencode(dict(form, client_secret=i["client_secret"])).encode())
    assert st == 200 and body["expires_in"] > 0
    claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert claims["aud"] == "https://redis.azure.com" and claims["oid"]
    assertion = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ3b3JrbG9hZCJ9.c2ln"
    st, body = _get_json(tok_url, ct, urllib.parse.urlencode(dict(
        form, client_assertion=assertion,
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer")).encode())
    assert st == 200
    st, body = _get_json(tok_url, ct, urllib.parse.urlencode(dict(
        form, scope="https://nosuch.example.com/.default", client_secret=i["client_secret"])).encode())
    assert st == 400 and "AADSTS500011" in body["error_description"]

    emu.set_secret("redis-password", "s3cret")
    kv = f"{i['key_vault']}/secrets/redis-password?api-version=7.4"
    st, body = _get_json(kv)
    assert st == 401
    st, body = _get_json(kv, {"Authorization": "Bearer " + vault_token})
    assert st == 200 and body["value"] == "s3cret"
    storage_token = _get_json(i["imds"] + "?api-version=2018-02-01&resource=https://storage.azure.com",
                              {"Metadata": "true"})[1]["access_token"]
    assert _get_json(kv, {"Authorization": "Bearer " + storage_token})[0] == 401  # wrong audience
    st, body = _get_json(f"{i['key_vault']}/secrets/nosuch?api-version=7.4", {"Authorization": "Bearer " + vault_token})
    assert st == 404 and body["error"]["code"] == "SecretNotFound"
    assert emu.ops("identity")["KeyVaultGetSecret"] == 4


def test_tokens_cross_services_and_expire(emu):
    """A storage token works on Blob, a Cosmos token on Cosmos, not the other way round; expired tokens fail."""
    i = emu.info
    st_tok = _get_json(i["imds"] + "?api-version=2018-02-01&resource=https://storage.azure.com",
                       {"Metadata": "true"})[1]["access_token"]
    hdr = {"x-ms-version": "2021-08-06", "x-ms-date": formatdate(usegmt=True)}
    st, _ = _get_json(emu.blob_account_url + "?restype=account&comp=properties",
                      dict(hdr, Authorization="Bearer " + st_tok))
    assert st == 200
    cos_tok = _get_json(i["imds"] + "?api-version=2018-02-01&resource=https://cosmos.azure.com",
                        {"Metadata": "true"})[1]["access_token"]
    st, _ = _get_json(emu.blob_account_url + "?restype=account&comp=properties",
                      dict(hdr, Authorization="Bearer " + cos_tok))
    assert st == 401
    chdr = {"x-ms-version": "2018-12-31", "x-ms-date": formatdate(usegmt=True)}
    assert _get_json(emu.cosmos_url + "/", dict(chdr, authorization=f"type=aad&ver=1.0&sig={cos_tok}"))[0] == 200
    assert _get_json(emu.cosmos_url + "/", dict(chdr, authorization=f"type=aad&ver=1.0&sig={st_tok}"))[0] == 401
    old = emu.control("identity", "GET", "/__token?resource=https://cosmos.azure.com&lifetime_s=-1")["access_token"]
    assert _get_json(emu.cosmos_url + "/", dict(chdr, authorization=f"type=aad&ver=1.0&sig={old}"))[0] == 401


def test_launcher_script_ready_file_and_clean_exit(tmp_path):
    """`python3 Tests/emulators/run.py --ready-file F` (the form non-Python tests use) and SIGTERM."""
    import subprocess
    from Tests.emulators.harness import REPO_ROOT
    ready = tmp_path / "emu.json"
    p = subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "Tests", "emulators", "run.py"),
                          "--identity-port", "-1", "--latency-ms", "5", "--ready-file", str(ready)],
                         stdout=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        assert poll(ready.exists, deadline_s=15.0), "no ready file"
        info = json.loads(ready.read_text())
        assert "identity" not in info and info["blob"].endswith("/devstoreaccount1")
        with urllib.request.urlopen(info["cosmos"] + "/__faults", timeout=5) as r:
            assert json.load(r)["latency_ms"] == 5.0
    finally:
        p.terminate()
        assert p.wait(10) == 0
