# syntax=docker/dockerfile:1
# The operator image: a release build on Debian, run on distroless
# (glibc + libgcc only, no shell, no package manager) as the non-root UID 65532 that
# the Helm chart's security context expects.
#
#   docker build -t confluence-operator:0.1.0 .
#
# This file has not been built by the project yet: its development machines have no
# container engine and cannot pull base images.
#
# Build stage: the Rust release the project is developed with; Debian 12 matches the
# runtime's glibc.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Every workspace member and declared target (benches, the fake server under tests/)
# must be present for cargo to read the manifests, so the whole source tree goes in.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY benches benches
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin confluence-operator \
 && install -D -m 0755 target/release/confluence-operator /out/confluence-operator

# Runtime stage: no shell is needed (the chart runs the binary directly).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/confluence-operator /usr/local/bin/confluence-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/confluence-operator"]
CMD ["run"]
