import Glibc

/// Builds a `Config` from the table's defaults (`Config()`), then a conf file, then env vars, then flags
/// (later sources win), all through the same directive table.
struct ConfigLoader {
    /// What the command line asked for besides settings.
    enum Action { case run, checkConfig, help, version, printConfig, tiersCheck }

    var action = Action.run
    var configFile: String?
    private var flagLines: [[String]] = []

    /// Parses argv (without the program name): `[FILE] [--config FILE] [--name args...]...`.
    init(arguments: [String]) throws {
        var i = 0
        var arguments = arguments
        // `tierproxy tiers check [options]`: connect to each configured tier and report.
        if arguments.count >= 2 && arguments[0] == "tiers" && arguments[1] == "check" {
            action = .tiersCheck
            arguments.removeFirst(2)
        }
        var current: [String]? = nil
        func finish() { if let c = current { flagLines.append(c) }; current = nil }
        while i < arguments.count {
            let arg = arguments[i]
            i += 1
            if arg.hasPrefix("--"), arg.count > 2 {
                finish()
                let name = String(arg.dropFirst(2)).lowercased()
                switch name {
                case "help": action = .help
                case "version": action = .version
                case "check-config", "test-config": action = .checkConfig
                case "print-config": action = .printConfig
                case "config":
                    guard i < arguments.count else { throw ConfigError("--config needs a file") }
                    configFile = arguments[i]
                    i += 1
                default:
                    guard configDirectives[name] != nil else { throw ConfigError("unknown option '--\(name)'") }
                    current = [name]
                }
            } else if current != nil {
                // A flag's value may hold several words ("--bind '127.0.0.1 ::1'"): split like a conf line.
                current!.append(contentsOf: try ConfigLoader.split(arg))
            } else if configFile == nil && (i == 1 || ["--check-config", "--test-config"].contains(arguments[i - 2])) {
                // `tierproxy FILE …`, or `tierproxy --check-config FILE …` as --help shows it.
                configFile = arg
            } else {
                throw ConfigError("unexpected argument '\(arg)'")
            }
        }
        finish()
    }

    /// The final configuration. `environment` is injectable for tests.
    func load(environment: [String: String]) throws -> Config {
        var config = Config()   // the table's defaults
        if let file = configFile {
            try applyFile(file, to: &config)
        }
        try applyEnvironment(environment, to: &config)
        for line in flagLines {
            try apply(line, to: &config, origin: "command line")
        }
        config.aclUsers = try config.acl.users()
        // Only the hashes are kept from here on: nothing later can print a password by mistake.
        config.acl.requirePass = ""
        config.acl.userLines = []
        // The seed's Key Vault variables give the password wherever the upstream came from, if
        // it has none of its own.
        if config.upstream.password?.isEmpty ?? true, let ref = UpstreamURL.keyVaultPassword(environment) {
            config.upstream.password = ref
        }
        return config
    }

    private func applyFile(_ path: String, to config: inout Config) throws {
        guard let text = readWholeFile(path) else {
            throw ConfigError("cannot read config file '\(path)': \(String(cString: strerror(errno)))")
        }
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            do {
                try apply(try ConfigLoader.split(String(line)), to: &config, origin: path)
            } catch let e as ConfigError {
                // The directive's name only: its arguments may be a secret (a password in a URL).
                let name = line.prefix { $0 != " " && $0 != "\t" }
                throw ConfigError("\(path):\(lineNumber): '\(name) …': \(e.description)")
            }
        }
    }

    private func applyEnvironment(_ env: [String: String], to config: inout Config) throws {
        // The seed library's variables first, so TIERPROXY_UPSTREAM can still override them.
        if let url = env["REDIS_URL"], !url.isEmpty {
            config.upstream = try UpstreamURL(parsing: url)
        } else if env["REDIS_HOST"] != nil || env["REDIS_PORT"] != nil || env["REDIS_PASSWORD"] != nil || env["REDIS_SSL"] != nil {
            if let h = env["REDIS_HOST"], !h.isEmpty { config.upstream.host = h }
            if let p = env["REDIS_PORT"], !p.isEmpty { config.upstream.port = try Units.int(p, 1...65535) }
            if let pw = env["REDIS_PASSWORD"], !pw.isEmpty { config.upstream.password = pw }
            if let s = env["REDIS_SSL"]?.lowercased(), ["1", "true", "yes"].contains(s) { config.upstream.tls = true }
        }
        for d in configTable {
            let key = "TIERPROXY_" + d.name.uppercased().replacingDashes()
            if let value = env[key] {
                try apply([d.name] + (try ConfigLoader.split(value)), to: &config, origin: "env \(key)")
            }
        }
    }

    private func apply(_ words: [String], to config: inout Config, origin: String) throws {
        guard let name = words.first?.lowercased() else { return }
        guard let d = configDirectives[name] else {
            throw ConfigError("Bad directive or wrong number of arguments: unknown directive '\(name)' (\(origin))")
        }
        try d.apply(&config, Array(words.dropFirst()))
    }

    /// Directives whose arguments are secrets: error messages show only the name.
    /// Splits a conf line into words as redis.conf does: spaces separate, "double quotes" take
    /// \n \r \t \" \\ and \xHH escapes, 'single quotes' take \' only.
    static func split(_ line: String) throws -> [String] {
        var words = [String]()
        var bytes = Array(line.utf8)[...]
        while true {
            while let b = bytes.first, b == 32 || b == 9 || b == 10 || b == 13 { bytes = bytes.dropFirst() }
            guard let first = bytes.first else { return words }
            var word = [UInt8]()
            if first == UInt8(ascii: "\"") || first == UInt8(ascii: "'") {
                let quote = first
                bytes = bytes.dropFirst()
                var closed = false
                while let b = bytes.popFirst() {
                    if b == quote { closed = true; break }
                    if b == UInt8(ascii: "\\"), let n = bytes.popFirst() {
                        if quote == UInt8(ascii: "'") {
                            if n == quote { word.append(n) } else { word.append(b); word.append(n) }
                            continue
                        }
                        switch n {
                        case UInt8(ascii: "n"): word.append(10)
                        case UInt8(ascii: "r"): word.append(13)
                        case UInt8(ascii: "t"): word.append(9)
                        case UInt8(ascii: "x"):
                            if bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                                word.append(v)
                                bytes = bytes.dropFirst(2)
                            } else { word.append(n) }
                        default: word.append(n)
                        }
                        continue
                    }
                    word.append(b)
                }
                guard closed else { throw ConfigError("unbalanced quotes in configuration line") }
                if let b = bytes.first, !(b == 32 || b == 9) {
                    throw ConfigError("closing quote must be followed by a space")
                }
            } else {
                while let b = bytes.first, !(b == 32 || b == 9 || b == 10 || b == 13) {
                    word.append(b)
                    bytes = bytes.dropFirst()
                }
            }
            words.append(String(decoding: word, as: UTF8.self))
        }
    }

    /// The documented conf file, generated from the table (`tierproxy --print-config`).
    static func template() -> String {
        var out = """
        # tierproxy configuration, in redis.conf style: one directive per line, "#" starts a comment.
        # Every directive is also a flag (--port 6381) and an env var (TIERPROXY_PORT=6381);
        # flags override env, env overrides this file. Sizes take redis units: 1k 1kb 1mb 1gb.
        # This file is generated by `tierproxy --print-config`; defaults are shown.

        """
        for d in configTable {
            out += "\n"
            for line in d.doc { out += "# \(line)\n" }
            for line in d.defaultArgs.split(separator: "\n") { out += "\(d.name) \(line)\n" }
        }
        return out
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}

extension String {
    func replacingDashes() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}

/// Reads a file into a String with plain POSIX calls (no Foundation).
func readWholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var data = [UInt8]()
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 { return nil }
        if n == 0 { break }
        data.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: data, as: UTF8.self)
}
