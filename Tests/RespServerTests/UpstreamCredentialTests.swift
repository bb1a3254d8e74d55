import Testing
@testable import RespServer
import Tiers

@Suite struct UpstreamCredentialTests {
    @Test func entraRefreshIsAtEightyPercentWithFiveMinutesToSpare() {
        #expect(EntraTokenSource.refreshDelay(lifetime: 3600) == 2880)     // 12 min before expiry
        #expect(EntraTokenSource.refreshDelay(lifetime: 1200) == 900)      // 5 min before expiry
        #expect(EntraTokenSource.refreshDelay(lifetime: 20) == 10)         // short test tokens: half
        #expect(EntraTokenSource.refreshDelay(lifetime: 1) == 1)
    }

    @Test func objectIdIsTheTokensOidClaim() {
        // {"alg":"none"} . {"oid":"0000-abc","sub":"x"} . sig, base64url without padding
        let token = "eyJhbGciOiJub25lIn0.eyJvaWQiOiIwMDAwLWFiYyIsInN1YiI6IngifQ.c2ln"
        #expect(EntraTokenSource.objectId(fromJWT: token) == "0000-abc")
        #expect(EntraTokenSource.objectId(fromJWT: "not-a-jwt") == nil)
        #expect(EntraTokenSource.objectId(fromJWT: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln") == nil)
    }

    @Test func keyVaultEnvBecomesAReference() {
        let env = ["KEY_VAULT_URI": "https://myvault.vault.azure.net/", "REDIS_PASSWORD_SECRET_NAME": "redis-key"]
        #expect(UpstreamURL.keyVaultPassword(env) == "keyvault://myvault.vault.azure.net/redis-key")
        #expect(UpstreamURL.keyVaultPassword(["KEY_VAULT_URI": "https://v.vault.azure.net"]) == nil)
    }

    @Test func keyVaultEnvFillsAnEmptyPasswordAfterFlags() throws {
        let loader = try ConfigLoader(arguments: ["--upstream", "redis://app:@h:6380"])
        let c = try loader.load(environment: ["KEY_VAULT_URI": "https://v.vault.azure.net/",
                                              "REDIS_PASSWORD_SECRET_NAME": "pw"])
        #expect(c.upstream.user == "app")
        #expect(c.upstream.password == "keyvault://v.vault.azure.net/pw")
        let credential = UpstreamCredential(config: c)
        #expect(credential.password?.reference != nil)
        #expect(credential.handshake() == nil)                                 // pending until resolved
    }

    @Test func masksCredentialsInUrlsThatDidNotParse() {
        #expect(UpstreamURL.masked("http://u:secret@h:1") == "http://***@h:1")
        #expect(UpstreamURL.masked("secret@h") == "***@h")
        #expect(UpstreamURL.masked("redis://h:1") == "redis://h:1")
        #expect(throws: ConfigError.self) { try UpstreamURL(parsing: "http://u:secret@h:1") }
    }

    @Test func upstreamAuthDirective() throws {
        let c = try ConfigLoader(arguments: ["--upstream-auth", "entra", "--upstream-user", "oid-1"]).load(environment: [:])
        #expect(c.upstreamEntra && c.upstreamUser == "oid-1")
        #expect(throws: ConfigError.self) {
            try ConfigLoader(arguments: ["--upstream-auth", "kerberos"]).load(environment: [:])
        }
        let entra = UpstreamCredential(config: c)
        #expect(entra.handshake() == nil)                                      // waits for the first token
        entra.publish(.ready(user: "oid-1", password: Secret("tok")))
        guard case .success(let h)? = entra.handshake() else { Issue.record("no handshake"); return }
        #expect(h.replies == 1 && h.bytes == Array("*3\r\n$4\r\nAUTH\r\n$5\r\noid-1\r\n$3\r\ntok\r\n".utf8))
    }
}
