import Foundation
import XCTest
@testable import Tiers

/// Signatures checked against values from outside our code: Microsoft's documented vector and
/// the official Python SDKs' own signing functions, run in a subprocess.
final class SigningTests: XCTestCase {
    let cosmosEmulatorKey = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
    let azuriteKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

    func testCosmosMicrosoftDocVector() throws {
        let key = try XCTUnwrap(Base64.decode(
            "dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw=="))
        let sig = CosmosAuth.signature(key: key, verb: "GET", resourceType: "dbs", resourceLink: "dbs/ToDoList",
                                       date: "Thu, 27 Apr 2017 00:51:12 GMT")
        XCTAssertEqual(sig, "c09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu+c+c=")
        let header = CosmosAuth.masterKeyAuthorization(key: key, verb: "GET", resourceType: "dbs",
                                                       resourceLink: "dbs/ToDoList", date: "Thu, 27 Apr 2017 00:51:12 GMT")
        XCTAssertEqual(header, "type%3Dmaster%26ver%3D1.0%26sig%3Dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2Bc%2Bc%3D")
    }

    func testCosmosMatchesPythonSDK() throws {
        let cases: [(String, String, String)] = [
            ("GET", "docs", "dbs/memory/colls/state/docs/user:42"),
            ("POST", "docs", "dbs/memory/colls/state"),
            ("DELETE", "docs", "dbs/Memory/colls/State/docs/Ünïcode key ✓"),
            ("PUT", "docs", "dbs/memory/colls/state/docs/~tp~3~a2V5"),
            ("GET", "colls", "dbs/memory/colls/state"),
        ]
        let date = HTTPDate.now()
        let script = """
        import json, sys, urllib.parse
        from azure.cosmos import auth
        sign = getattr(auth, "__get_authorization_token_using_master_key")
        key, date, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
        for verb, rtype, link in cases:
            print(urllib.parse.quote(sign(verb, link, rtype, {"x-ms-date": date}, key), "-_.!~*'()"))
        """
        let json = String(data: try JSONSerialization.data(withJSONObject: cases.map { [$0.0, $0.1, $0.2] }), encoding: .utf8)!
        let (status, out, err) = runPython(script, args: [cosmosEmulatorKey, date, json])
        XCTAssertEqual(status, 0, err)
        let expected = out.split(separator: "\n").map(String.init)
        XCTAssertEqual(expected.count, cases.count, err)
        let key = Base64.decode(cosmosEmulatorKey)!
        for (i, c) in cases.enumerated() where i < expected.count {
            XCTAssertEqual(CosmosAuth.masterKeyAuthorization(key: key, verb: c.0, resourceType: c.1, resourceLink: c.2, date: date),
                           expected[i], "case \(c)")
        }
    }

    func testCosmosTokenAuthorizationIsSentAsIs() {
        XCTAssertEqual(CosmosAuth.tokenAuthorization("eyJ.a-b_c.d"), "type=aad&ver=1.0&sig=eyJ.a-b_c.d")
    }

    /// One Shared Key case: method, URL, headers (as sent), body length.
    struct BlobCase { var method: String; var url: String; var headers: [(String, String)]; var length: Int }

    func testBlobSharedKeyMatchesPythonSDK() throws {
        let date = HTTPDate.now()
        let common: [(String, String)] = [("x-ms-date", date), ("x-ms-version", "2021-08-06")]
        let cases: [BlobCase] = [
            BlobCase(method: "PUT", url: "http://127.0.0.1:10000/devstoreaccount1/memory/user%3A42",
                     headers: common + [("x-ms-blob-type", "BlockBlob"), ("Content-Type", "application/octet-stream"),
                                        ("x-ms-meta-tp_exp", "1700000000000"), ("x-ms-meta-tp_type", "string"),
                                        ("x-ms-meta-tp_db", "3"), ("x-ms-meta-tp_key", "a2V5"),
                                        ("x-ms-meta-tp_enc", "gzip"), ("Content-Encoding", "gzip")], length: 11),
            BlobCase(method: "PUT", url: "http://127.0.0.1:10000/devstoreaccount1/memory/empty",
                     headers: common + [("x-ms-blob-type", "BlockBlob")], length: 0),
            BlobCase(method: "GET", url: "http://127.0.0.1:10000/devstoreaccount1/memory/%C3%BCn%C3%AFcode%20key/x",
                     headers: common, length: 0),
            BlobCase(method: "PUT", url: "http://127.0.0.1:10000/devstoreaccount1/memory/big?comp=block&blockid=MDAwMDE%3D",
                     headers: common, length: 4096),
            BlobCase(method: "PUT", url: "http://127.0.0.1:10000/devstoreaccount1/memory/big?comp=blocklist",
                     headers: common + [("Content-Type", "application/xml")], length: 120),
            BlobCase(method: "DELETE", url: "http://127.0.0.1:10000/devstoreaccount1/memory/k?timeout=30",
                     headers: common + [("x-ms-delete-snapshots", "include"), ("x-ms-deletea", "1"), ("x-ms-client-request-id", "r"), ("x-ms-clientrequest", "s")], length: 0),
            BlobCase(method: "GET", url: "https://acct.blob.core.windows.net/memory?restype=container",
                     headers: common, length: 0),
        ]
        let script = """
        import json, sys
        from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
        from azure.core.pipeline import PipelineRequest, PipelineContext
        from azure.core.pipeline.transport import HttpRequest
        key, cases = sys.argv[1], json.loads(sys.argv[2])
        for method, url, headers, length, account in cases:
            h = dict(headers)
            h["Content-Length"] = str(length)
            req = HttpRequest(method, url, headers=h)
            SharedKeyCredentialPolicy(account, key).on_request(PipelineRequest(req, PipelineContext(None)))
            print(req.headers["Authorization"])
        """
        func account(_ url: String) -> String { url.contains("devstoreaccount1") ? "devstoreaccount1" : "acct" }
        let payload = cases.map { c -> [Any] in [c.method, c.url, c.headers.map { [$0.0, $0.1] }, c.length, account(c.url)] }
        let json = String(data: try JSONSerialization.data(withJSONObject: payload), encoding: .utf8)!
        let (status, out, err) = runPython(script, args: [azuriteKey, json])
        XCTAssertEqual(status, 0, err)
        let expected = out.split(separator: "\n").map(String.init)
        XCTAssertEqual(expected.count, cases.count, err)
        let key = Base64.decode(azuriteKey)!
        for (i, c) in cases.enumerated() where i < expected.count {
            let parts = BlobURL.split(c.url)
            let sts = BlobAuth.stringToSign(method: c.method, account: account(c.url), path: parts.path,
                                            query: parts.query, headers: c.headers, contentLength: c.length)
            XCTAssertEqual(BlobAuth.sharedKeyAuthorization(account: account(c.url), key: key, stringToSign: sts),
                           expected[i], "case \(c.method) \(c.url)\n\(sts)")
        }
    }

    func testBlobStringToSignLayout() {
        let sts = BlobAuth.stringToSign(method: "GET", account: "devstoreaccount1", path: "/devstoreaccount1/c/b",
                                        query: [("comp", "list"), ("Restype", "container")],
                                        headers: [("x-ms-version", "2021-08-06"), ("X-Ms-Date", "D")], contentLength: 0)
        XCTAssertEqual(sts, "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:D\nx-ms-version:2021-08-06\n"
                       + "/devstoreaccount1/devstoreaccount1/c/b\ncomp:list\nrestype:container")
    }

    func testSASIsAppended() {
        XCTAssertEqual(BlobAuth.appendSAS("?sv=1&sig=a%2Bb", to: "http://h/a/b"), "http://h/a/b?sv=1&sig=a%2Bb")
        XCTAssertEqual(BlobAuth.appendSAS("sv=1", to: "http://h/a/b?comp=block"), "http://h/a/b?comp=block&sv=1")
    }

    func testSecretsAreRedacted() {
        let s = Secret("super-secret-key")
        XCTAssertFalse("\(s)".contains("super"))
        XCTAssertFalse(String(reflecting: s).contains("super"))
        XCTAssertEqual(s.reveal, "super-secret-key")
    }

    func testBase64RoundTrip() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            let text = Base64.encode(bytes)
            XCTAssertEqual(text, Data(bytes).base64EncodedString())
            XCTAssertEqual(Base64.decode(text), bytes)
        }
        XCTAssertNil(Base64.decode("a$bc"))
    }

    func testHTTPDate() {
        XCTAssertEqual(HTTPDate.format(unixSeconds: 1493254272), "Thu, 27 Apr 2017 00:51:12 GMT")
        XCTAssertEqual(HTTPDate.parse("Thu, 27 Apr 2017 00:51:12 GMT"), 1493254272)
    }
}
