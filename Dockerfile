# runner-spawner: one static binary in a minimal, non-root image. Every role is a
# subcommand:  docker run IMAGE webhook --config /etc/spawner/spawner.yaml
# (docker-compose.yml and deployments/kubernetes/ show each role.)
#
# Build:  docker build -t runner-spawner --build-arg VERSION=$(git describe --tags --always) .
# The build reaches only the Go module proxy (GOPROXY, no direct VCS fallback), and pulls
# golang and distroless from their registries. With no registry, use the target
# "prebuilt" below. (No "# syntax=" line: BuildKit would pull that frontend image; the
# built-in one has RUN --mount.)

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
ARG GOPROXY=https://proxy.golang.org
ENV CGO_ENABLED=0 \
    GOTOOLCHAIN=local \
    GOPROXY=${GOPROXY} \
    GOFLAGS=-mod=readonly
WORKDIR /src
# Modules first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/spawner ./cmd/spawner \
 && /out/spawner version

# Target "prebuilt": the same image around a binary built on the host, for a Docker host
# that reaches no registry (FROM scratch pulls nothing). The build context is a directory
# with the static binary and the CA bundle, nothing else:
#   CGO_ENABLED=0 go build -trimpath -o ctx/spawner ./cmd/spawner
#   cp /etc/ssl/certs/ca-certificates.crt ctx/
#   DOCKER_BUILDKIT=1 docker build -f Dockerfile --target prebuilt -t runner-spawner:local ctx
# (BuildKit builds only the stages a target needs; the legacy builder would build the
# golang stage above first.) scripts/compose-test.sh does this. It has no tzdata and no
# /etc/passwd: the spawner needs neither.
FROM scratch AS prebuilt
COPY spawner /usr/local/bin/spawner
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/bin
USER 65532:65532
EXPOSE 8080 8081 9090
ENTRYPOINT ["spawner"]
CMD ["--help"]

# The default target. distroless/static: CA certificates (GitHub, OpenStack over TLS), tzdata, /etc/passwd
# with the user nonroot (65532), and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spawner /usr/local/bin/spawner
USER 65532:65532
# webhook (/webhook, /healthz, /readyz, /metrics), bootstrap, metrics.listen
EXPOSE 8080 8081 9090
ENTRYPOINT ["spawner"]
CMD ["--help"]
