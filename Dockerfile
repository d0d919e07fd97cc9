# sluiced and sluicectl on Debian 12. `make docker-check` (scripts/docker-check.sh) builds and
# checks this image without a Docker engine.
#
#   docker build -t sluice .
#   docker run -d --name sluice --stop-timeout 60 \
#     -v /etc/sluice/sluice.json:/etc/sluice/sluice.json:ro -v sluice-run:/run/sluice sluice
#
# The example config reaches PostgreSQL at /var/run/postgresql: mount your own config (and the
# server's socket directory, or use a TCP conninfo). SIGTERM drains for drain.timeout_s (30 s by
# default), so give `docker stop` more than that (--stop-timeout / stop_grace_period), or the
# engine kills the daemon mid-drain after its default 10 s.

# ---- build: the same toolchain and libraries as a developer's machine ----
FROM debian:bookworm-slim AS build
# On every layer after it, so that `make docker-check` can prune this project's old builds alone.
LABEL org.opencontainers.image.title=sluice
# The project's own package list, so the image builds with what `make build` is tested with
# (its build part: no test servers, drivers or linters).
COPY scripts/install-deps.sh /usr/local/sbin/install-deps.sh
RUN bash /usr/local/sbin/install-deps.sh --build-only && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# RelWithDebInfo (-O2), as `make build`: the build the tests, the benchmarks and the link order's
# function names (daemon/sluiced.link-order) are made with and checked on (the link_order test); strip
# drops the debug information.
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build build -j"$(nproc)" --target sluiced sluicectl \
 && strip build/bin/sluiced build/bin/sluicectl

# ---- runtime: the two binaries and their shared libraries only ----
FROM debian:bookworm-slim
LABEL org.opencontainers.image.title=sluice \
      org.opencontainers.image.description="Sluice: a PostgreSQL connection pooler (sluiced, sluicectl)"
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libuv1 libpq5 libssl3 liburing2 \
 && rm -rf /var/lib/apt/lists/*
# /run/sluice holds the client and control sockets (systemd's RuntimeDirectory= outside a container).
RUN useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin \
      --comment "Sluice PostgreSQL pooler" sluice \
 && install -d -o sluice -g sluice -m 0755 /run/sluice
COPY --from=build /src/build/bin/sluiced /src/build/bin/sluicectl /usr/local/bin/
COPY systemd/sluice.json /etc/sluice/sluice.json
USER sluice
# Share the socket directory with client containers: psql -h /run/sluice -p 6432 DBNAME
VOLUME ["/run/sluice"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["sluicectl", "-s", "/run/sluice/control.sock", "status"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["sluiced", "-c", "/etc/sluice/sluice.json"]
