# Multi-stage build: compile in the Rust image, run on slim Debian.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
# The workspace's other member and the patched minijinja: cargo reads both manifests.
COPY bench ./bench
COPY vendor ./vendor
COPY mysql ./mysql
COPY fetchers ./fetchers
RUN cargo build --release --locked -p ha-fetchers --bin ha-fetchers

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /app app
WORKDIR /app
COPY --from=build /src/target/release/ha-fetchers /usr/local/bin/ha-fetchers
COPY fetchers ./fetchers
COPY mysql ./mysql
USER app
ENV BIND=0.0.0.0:8080 FETCHERS_DIR=/app/fetchers
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8080/api/health/redis >/dev/null || exit 1
ENTRYPOINT ["ha-fetchers"]
CMD ["serve"]
