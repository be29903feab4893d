# syntax=docker/dockerfile:1
# The pgpart image: `docker build -t pgpart:0.1.0 .`
# Runs `pgpart controller` by default; any other subcommand works too, e.g.
# `docker run --rm pgpart:0.1.0 crd`.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The target dir is a cache mount, so copy the binary out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pgpart \
 && install -m 0755 target/release/pgpart /pgpart

# glibc, libgcc and CA certificates, no shell, user nonroot (65532:65532).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="pgpart" \
      org.opencontainers.image.description="Kubernetes operator and CLI that keeps PostgreSQL partitioned tables healthy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /pgpart /pgpart
USER 65532:65532
# /metrics, /healthz and /readyz.
EXPOSE 8080
ENTRYPOINT ["/pgpart"]
CMD ["controller"]
