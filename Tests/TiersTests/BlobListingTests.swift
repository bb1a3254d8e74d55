import Testing
@testable import Tiers

@Suite struct BlobListingTests {
    @Test func namesMetadataAndNextMarker() throws {
        let xml = """
            <?xml version="1.0" encoding="utf-8"?>
            <EnumerationResults ServiceEndpoint="https://acct.blob.core.windows.net/" ContainerName="memory">
              <Prefix /><Marker>2!8!abc</Marker><MaxResults>3</MaxResults>
              <Blobs>
                <Blob><Name>plain</Name><Properties><Content-Length>1</Content-Length><Etag>"0x1"</Etag></Properties>
                  <Metadata /></Blob>
                <Blob><Name>a &amp; b &lt;c&gt; &#233;&#x263A;</Name><Properties /><Metadata><TP_DB>2</TP_DB><tp_key>AAE=</tp_key></Metadata></Blob>
                <Blob><Name Encoded="true">ctl%01x</Name><Properties><Name>not the blob's</Name></Properties></Blob>
                <Blob><Name><![CDATA[<raw>]]></Name></Blob>
              </Blobs>
              <NextMarker>2!12!bmV4dA==</NextMarker>
            </EnumerationResults>
            """
        let listing = try #require(BlobListing.parse(Array(xml.utf8)))
        #expect(listing.blobs.map(\.name) == ["plain", "a & b <c> é☺", "ctl\u{1}x", "<raw>"])
        #expect(listing.blobs.map(\.metadata) == [[:], ["tp_db": "2", "tp_key": "AAE="], [:], [:]])
        #expect(listing.nextMarker == "2!12!bmV4dA==")
    }

    @Test func lastPageHasNoMarker() throws {
        for tail in ["<NextMarker />", "<NextMarker></NextMarker>", ""] {
            let xml = "<EnumerationResults><Blobs><Blob><Name>k</Name></Blob></Blobs>\(tail)</EnumerationResults>"
            let listing = try #require(BlobListing.parse(Array(xml.utf8)), "\(tail)")
            #expect(listing.blobs.map(\.name) == ["k"])
            #expect(listing.nextMarker == nil)
        }
    }

    @Test func anythingElseIsNotAListing() {
        for text in ["", "{\"Documents\": []}", "<Error><Code>AuthenticationFailed</Code></Error>",
                     "<EnumerationResults><Blobs><Blob><Name>k</Name></Blobs></EnumerationResults>",
                     "<EnumerationResults><Blobs><Blob><Name>a &bogus; b</Name></Blob></Blobs></EnumerationResults>",
                     "<EnumerationResults><Blobs>", "<EnumerationResults attr=\"unterminated></EnumerationResults>"] {
            #expect(BlobListing.parse(Array(text.utf8)) == nil, "\(text)")
        }
    }
}
