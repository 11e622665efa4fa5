# Multi-stage build of the same `hamlet` binary the README runs with `cargo run --release`.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev libsqlite3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin hamlet

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 libsqlite3-0 libssl3 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/hamlet --create-home hamlet
COPY --from=build /src/target/release/hamlet /usr/local/bin/hamlet
COPY data /usr/share/hamlet/data
USER hamlet
WORKDIR /var/lib/hamlet
ENV HAMLET_BIND=0.0.0.0:8080 \
    HAMLET_DATABASE_URL=sqlite:///var/lib/hamlet/hamlet.db \
    HAMLET_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["hamlet"]
CMD ["serve"]
