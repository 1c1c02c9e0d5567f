# syntax=docker/dockerfile:1
# One image for every role; the command picks it:
#   rocketry namesrv | rocketry broker -c FILE | rocketry standalone   (the default entrypoint)
#   rocketry-operator                                                 (the operator's command)

# Build stage: the whole workspace in release mode, only the two shipped binaries kept.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# librdkafka (the Kafka client of `rocketry migrate`) is built from source by its configure
# script and make, which the slim image lacks, against OpenSSL for TLS and SASL to Kafka.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY message message
COPY protocol protocol
COPY store store
COPY broker broker
COPY operator operator
COPY bench bench
COPY migrate migrate
# Test-only, but a workspace member (the broker's tests use it), so cargo needs it to resolve.
COPY faults faults
# operator's unit tests read docs/configuration.md at compile time (include_str!).
COPY docs docs
RUN cargo build --release --locked -p broker --bin rocketry -p operator --bin rocketry-operator \
 && install -D -m 0755 target/release/rocketry /out/rocketry \
 && install -D -m 0755 target/release/rocketry-operator /out/rocketry-operator

# Runtime stage: glibc, CA certificates (the operator talks TLS to the apiserver), OpenSSL (the
# migration's TLS to Kafka), no shell tools beyond what Debian's slim base has, and a fixed
# non-root user the manifests name by number.
FROM debian:bookworm-slim
# Unpinned on purpose: the CA bundle and OpenSSL should be the newest the base's release has.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 rocketry \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/rocketry --shell /usr/sbin/nologin rocketry \
 && install -d -o 10001 -g 10001 /var/lib/rocketry /var/lib/rocketry/store
COPY --from=build /out/rocketry /out/rocketry-operator /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/rocketry
# Name server, broker (RocketMQ's default ports), operator metrics and health.
EXPOSE 9876 10911 8080
ENTRYPOINT ["rocketry"]
CMD ["standalone"]
