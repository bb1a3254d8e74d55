// swift-tools-version:6.0
import PackageDescription

// Language mode 5: the code lives on C callbacks and per-thread event loops, where Swift 6's
// isolation checking would need an annotation on every trampoline without making anything safer.
let settings: [SwiftSetting] = [
    .swiftLanguageMode(.v5),
    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "tierproxy",
    products: [
        .executable(name: "tierproxy", targets: ["RespServer"]),
        .executable(name: "tierbench", targets: ["TierBench"]),
        .library(name: "Tiers", targets: ["Tiers"]),
    ],
    targets: [
        .systemLibrary(name: "CLibevent", pkgConfig: "libevent_pthreads",
                       providers: [.apt(["libevent-dev"])]),
        .systemLibrary(name: "CHiredis", pkgConfig: "hiredis",
                       providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),

        // Pure RESP parsing and scanning: bytes in, verdicts out. No sockets, no loop.
        .target(name: "RESP", swiftSettings: settings),
        // The one module that knows libevent: loops, connections, timers, listeners.
        .target(name: "Reactor", dependencies: ["CLibevent", "COpenSSL"], swiftSettings: settings),
        // Warm and cold tiers: entry format, names, backends, HTTP, credentials.
        .target(name: "Tiers", dependencies: ["Reactor", "CCurl", "COpenSSL", "CSQLite", "CZlib"],
                swiftSettings: settings),
        .executableTarget(name: "RespServer",
                          dependencies: ["RESP", "Reactor", "Tiers", "CHiredis", "COpenSSL"],
                          swiftSettings: settings),
        // Throughput of each tier backend at N requests in flight (bench/, not a test).
        .executableTarget(name: "TierBench", dependencies: ["Tiers", "Reactor"], swiftSettings: settings),

        .testTarget(name: "RESPTests", dependencies: ["RESP", "CHiredis"], swiftSettings: settings),
        .testTarget(name: "ReactorTests", dependencies: ["Reactor"], swiftSettings: settings),
        .testTarget(name: "TiersTests", dependencies: ["Tiers", "Reactor"], swiftSettings: settings),
        .testTarget(name: "RespServerTests", dependencies: ["RespServer"], swiftSettings: settings),
    ]
)
