# syntax=docker/dockerfile:1
# All four Orderflow binaries in one small image. Build: docker build -t orderflow .
# Run one service by naming its binary: order-api (default), payment-worker,
# inventory-worker, notification-worker, or gateway-sim (the payment provider simulator). The API's health check is
# `order-api healthcheck` (docker-compose.yml sets it; the workers share the image).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src

# Dependencies first, from the manifests alone with placeholder sources: this layer is
# rebuilt only when Cargo.toml or Cargo.lock change, not on every code change.
COPY Cargo.toml Cargo.lock ./
COPY services/queue/Cargo.toml services/queue/
COPY services/orders/Cargo.toml services/orders/
COPY services/runtime/Cargo.toml services/runtime/
COPY services/order-api/Cargo.toml services/order-api/
COPY services/payment-worker/Cargo.toml services/payment-worker/
COPY services/inventory-worker/Cargo.toml services/inventory-worker/
COPY services/notification-worker/Cargo.toml services/notification-worker/
COPY services/gateway-sim/Cargo.toml services/gateway-sim/
COPY services/tests/Cargo.toml services/tests/
COPY services/bench/Cargo.toml services/bench/
RUN for crate in queue orders runtime order-api payment-worker inventory-worker notification-worker gateway-sim tests bench; do \
        mkdir -p "services/$crate/src" && : > "services/$crate/src/lib.rs"; \
    done \
    && for bin in order-api payment-worker inventory-worker notification-worker gateway-sim bench; do \
        echo 'fn main() {}' > "services/$bin/src/main.rs"; \
    done \
    && cargo build --release --locked \
        -p order-api -p payment-worker -p inventory-worker -p notification-worker -p gateway-sim

# The real sources (the migrations, the queue's under services/queue/migrations included,
# are embedded into the binaries at compile time).
COPY migrations migrations
COPY services services
# Newer than the placeholders, so cargo rebuilds the workspace crates.
RUN find services -name '*.rs' -exec touch {} + \
    && cargo build --release --locked \
        -p order-api -p payment-worker -p inventory-worker -p notification-worker -p gateway-sim

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# CA roots for SMTPS/STARTTLS; no compilers, no package caches, no shell tools added.
# The distribution's current CA bundle is what we want, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 orderflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin orderflow \
    && mkdir -p /var/lib/orderflow/mail /var/lib/orderflow/gateway \
    && chown -R orderflow:orderflow /var/lib/orderflow
COPY --from=build \
    /src/target/release/order-api \
    /src/target/release/payment-worker \
    /src/target/release/inventory-worker \
    /src/target/release/notification-worker \
    /src/target/release/gateway-sim \
    /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/orderflow
ENV API_ADDR=0.0.0.0:8080 \
    MAIL_DIR=/var/lib/orderflow/mail \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080
CMD ["order-api"]
