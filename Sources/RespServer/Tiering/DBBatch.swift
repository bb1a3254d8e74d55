/// Commands for one route that may touch other databases than the client's: each key's command
/// is wrapped in SELECT when its db differs, and the client's db is selected again at the end.
struct DBBatch {
    let home: Int
    private var current: Int
    private(set) var commands: [[[UInt8]]] = []
    /// Indices in `commands` of the commands added with `add` (not the SELECTs).
    private(set) var mine: [Int] = []

    init(home: Int) {
        self.home = home
        self.current = home
    }

    /// Adds `args` to run in `db`; returns its index in the batch.
    @discardableResult
    mutating func add(_ args: [[UInt8]], db: Int) -> Int {
        if db != current {
            commands.append([Array("SELECT".utf8), Array(String(db).utf8)])
            current = db
        }
        commands.append(args)
        mine.append(commands.count - 1)
        return commands.count - 1
    }

    /// Adds a command that runs in whatever db is current, outside `mine`.
    mutating func raw(_ args: [[UInt8]]) { commands.append(args) }

    /// Selects the home db again now, if a key moved it.
    mutating func selectHome() {
        if current != home {
            commands.append([Array("SELECT".utf8), Array(String(home).utf8)])
            current = home
        }
    }

    /// The commands, with the home db selected again if a key moved it.
    mutating func finish() -> [[[UInt8]]] {
        if current != home {
            commands.append([Array("SELECT".utf8), Array(String(home).utf8)])
            current = home
        }
        return commands
    }

    /// The replies to the commands added with `add`, in order.
    func ours(_ replies: [[UInt8]]) -> [ArraySlice<UInt8>] { mine.map { replies[$0][...] } }
}
