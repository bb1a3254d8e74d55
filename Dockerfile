# tierproxy image: build on the official Swift image, run on debian:bookworm-slim with only the
# libraries the binary links (checked by Tests/integration/test_deploy_files.py with ldd + dpkg -S).
# The Swift runtime is linked statically, so the runtime stage needs no toolchain.

FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libevent-dev libhiredis-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Package.swift declares the test targets too, and SwiftPM refuses a manifest whose targets'
# directories are missing, so Tests comes along (nothing in it is built).
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product tierproxy --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/tierproxy" /out/tierproxy
COPY conf/tierproxy.conf /out/tierproxy.conf

FROM debian:bookworm-slim AS runtime
# One package per shared library the binary needs (libc6 and libgcc-s1 are in the base image),
# plus curl for the HEALTHCHECK and the CA store for HTTPS to Cosmos DB and Blob Storage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libevent-2.1-7 libevent-core-2.1-7 libevent-extra-2.1-7 libevent-pthreads-2.1-7 libevent-openssl-2.1-7 \
      libhiredis0.14 libcurl4 libssl3 libsqlite3-0 zlib1g libstdc++6 libgcc-s1 libc6 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tierproxy --create-home tierproxy
COPY --from=build /out/tierproxy /usr/local/bin/tierproxy
COPY --from=build /out/tierproxy.conf /etc/tierproxy/tierproxy.conf
USER tierproxy
WORKDIR /var/lib/tierproxy
# Listen on every interface inside the container; keep data (key log, embedded tiers) on a volume.
ENV TIERPROXY_BIND=0.0.0.0 \
    TIERPROXY_DIR=/var/lib/tierproxy \
    TIERPROXY_METRICS_PORT=9180 \
    TIERPROXY_METRICS_BIND=0.0.0.0
VOLUME ["/var/lib/tierproxy"]
EXPOSE 6380 9180
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9180/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tierproxy"]
CMD ["/etc/tierproxy/tierproxy.conf"]
