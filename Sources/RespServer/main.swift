import Glibc
import Tiers

let tierproxyVersion = "0.1.0"

/// Entry point: `tierproxy [CONFIG-FILE] [--config FILE] [--directive value ...]`.
func runMain() -> Int32 {
    let arguments = Array(CommandLine.arguments.dropFirst())
    do {
        let loader = try ConfigLoader(arguments: arguments)
        switch loader.action {
        case .help:
            print(helpText())
            return 0
        case .version:
            print("tierproxy v=\(tierproxyVersion)")
            return 0
        case .printConfig:
            print(ConfigLoader.template(), terminator: "")
            return 0
        default:
            break
        }
        let env = processEnvironment()
        var config = try loader.load(environment: env)
        if loader.action == .tiersCheck {
            return runTiersCheck(config: config, environment: env)
        }
        let tlsWarnings = try UpstreamTLS.prepare(&config)
        try ClientTLS.prepare(&config)
        if loader.action == .checkConfig {
            _ = try TierSetup.resolve(config: config, environment: env)   // the tier settings parse
            for w in tlsWarnings { print("Warning: \(w)") }
            print("Configuration OK (\(loader.configFile ?? "defaults")): port \(config.port)"
                  + (config.tlsPort == 0 ? "" : ", tls-port \(config.tlsPort)") + ", upstream \(config.upstream)")
            return 0
        }
        try Log.configure(level: config.loglevel, format: config.logFormat, path: config.logfile)
        HeapSettings.apply()
        for w in tlsWarnings { Log.warning(w) }
        try Server(config: config, environment: env).run()
        return 0
    } catch let e as ConfigError {
        fputs("\n*** FATAL CONFIG FILE ERROR ***\n\(e.description)\n", stderr)
        return 1
    } catch {
        fputs("tierproxy: \(error)\n", stderr)
        return 1
    }
}

func helpText() -> String {
    var s = """
    Usage: tierproxy [/path/to/tierproxy.conf] [--config FILE] [--<directive> <value> ...]
           tierproxy --check-config [FILE] [options]   validate and exit
           tierproxy --print-config                    print the documented default conf file
           tierproxy tiers check [FILE] [options]      connect to each configured tier, one line each
           tierproxy --version | --help

    Every directive can be given as a flag (--port 6381) or an env var (TIERPROXY_PORT=6381).
    Precedence: flags > env > file > defaults. Also read: REDIS_URL, REDIS_HOST, REDIS_PORT,
    REDIS_PASSWORD, REDIS_SSL, and KEY_VAULT_URI + REDIS_PASSWORD_SECRET_NAME (the upstream
    password from Key Vault).

    Directives:

    """
    for d in configTable {
        s += "  --\(d.name) (default: \(d.defaultArgs.split(separator: "\n").joined(separator: " | ")))\n"
        for line in d.doc { s += "      \(line)\n" }
    }
    return s
}

CrashReport.withoutMemoryDumps()
exit(runMain())
