import CCurl

// Every @convention(c) function curl calls lives here. Each turns its user pointer back into
// the Swift object that owns the multi handle or the transfer and hands over plain values.

let curlSocketCallback: @convention(c) (UnsafeMutableRawPointer?, curl_socket_t, Int32,
                                        UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
    _, fd, what, clientp, _ in
    Unmanaged<HTTPClient>.fromOpaque(clientp!).takeUnretainedValue().curlWantsSocket(fd, what)
    return 0
}

let curlTimerCallback: @convention(c) (UnsafeMutableRawPointer?, Int, UnsafeMutableRawPointer?) -> Int32 = {
    _, millis, clientp in
    Unmanaged<HTTPClient>.fromOpaque(clientp!).takeUnretainedValue().curlWantsTimer(millis)
    return 0
}

let curlWriteCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userp in
    let n = size * count
    guard let data = data, n > 0 else { return n }
    let t = Unmanaged<CurlTransfer>.fromOpaque(userp!).takeUnretainedValue()
    let ok = data.withMemoryRebound(to: UInt8.self, capacity: n) { t.receiveBody(UnsafeBufferPointer(start: $0, count: n)) }
    return ok ? n : 0
}

let curlHeaderCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = {
    data, size, count, userp in
    let n = size * count
    guard let data = data, n > 0 else { return n }
    let t = Unmanaged<CurlTransfer>.fromOpaque(userp!).takeUnretainedValue()
    data.withMemoryRebound(to: UInt8.self, capacity: n) { t.receiveHeaderLine(UnsafeBufferPointer(start: $0, count: n)) }
    return n
}
