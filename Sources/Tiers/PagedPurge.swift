/// A purge over a store that can only be listed a page at a time (Cosmos DB's read feed, Blob
/// Storage's List Blobs): list one page, delete its matching items `parallelism` at a time, then
/// list the next page with the continuation the store gave, until it gives none. Deleting a page
/// before asking for the next keeps memory to one page; both services' continuations are
/// positions in the listing order, so deletions behind them do not make the listing skip.
///
/// Runs on one loop (the tier's). The first failure stops it: deletes in flight finish, none are
/// started, and the error is reported.
final class PagedPurge<Item> {
    /// One page: the items to delete (already filtered) and the continuation, nil on the last page.
    typealias Page = (items: [Item], continuation: String?)
    /// Lists the page at a continuation (nil: the first page).
    typealias ListPage = (String?, @escaping (Result<Page, TierError>) -> Void) -> Void
    /// Deletes one item; true if it was deleted, false if it was already gone.
    typealias Remove = (Item, @escaping (Result<Bool, TierError>) -> Void) -> Void

    /// Deletes in flight at once: enough to hide round trips, few enough not to be throttled.
    static var defaultParallelism: Int { 16 }

    private let listPage: ListPage
    private let remove: Remove
    private let parallelism: Int
    private var done: ((Result<Int, TierError>) -> Void)?
    private var deleted = 0
    private var items = [Item]()
    private var continuation: String?
    private var next = 0
    private var inFlight = 0
    private var failure: TierError?

    /// Bumped per page, so a completion that arrives synchronously cannot mix two pages.
    private var pageNumber = 0

    /// Starts a purge; `done` runs once, with the number of items deleted. The closures hold the
    /// purge: it lives until its last completion.
    static func run(parallelism: Int = defaultParallelism, list: @escaping ListPage, remove: @escaping Remove,
                    _ done: @escaping (Result<Int, TierError>) -> Void) {
        PagedPurge(parallelism: parallelism, list: list, remove: remove, done).listNext(nil)
    }

    private init(parallelism: Int, list: @escaping ListPage, remove: @escaping Remove,
                 _ done: @escaping (Result<Int, TierError>) -> Void) {
        listPage = list
        self.remove = remove
        self.parallelism = max(1, parallelism)
        self.done = done
    }

    private func listNext(_ token: String?) {
        listPage(token) { [self] result in
            switch result {
            case .failure(let e): finish(.failure(e))
            case .success(let page):
                items = page.items
                continuation = page.continuation
                next = 0
                pageNumber += 1
                if items.isEmpty { pageDone() } else { startDeletes() }
            }
        }
    }

    private func startDeletes() {
        let page = pageNumber
        while page == pageNumber, failure == nil, inFlight < parallelism, next < items.count {
            let item = items[next]
            next += 1
            inFlight += 1
            remove(item) { [self] result in
                inFlight -= 1
                switch result {
                case .success(let gone): if gone { deleted += 1 }
                case .failure(let e): failure = failure ?? e
                }
                if inFlight == 0 && (failure != nil || next == items.count) { pageDone() } else { startDeletes() }
            }
        }
    }

    private func pageDone() {
        if let failure { finish(.failure(failure)); return }
        guard let token = continuation else { finish(.success(deleted)); return }
        listNext(token)
    }

    private func finish(_ result: Result<Int, TierError>) {
        let d = done
        done = nil
        items = []
        d?(result)
    }
}
