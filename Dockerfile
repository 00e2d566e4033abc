# syntax=docker/dockerfile:1
#
# runner-spawner: one static binary in a minimal, non-root image. Every role is a
# subcommand:  docker run IMAGE webhook --config /etc/spawner/spawner.yaml
# (docker-compose.yml and deployments/kubernetes/ show each role.)
#
# Build:  docker build -t runner-spawner --build-arg VERSION=$(git describe --tags --always) .
# The build reaches only the Go module proxy (GOPROXY, no direct VCS fallback).

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

# distroless/static: CA certificates (GitHub, OpenStack over TLS), tzdata, /etc/passwd
# with the user nonroot (65532), and nothing else: no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spawner /usr/local/bin/spawner
USER 65532:65532
# webhook (/webhook, /healthz, /readyz, /metrics), bootstrap, metrics.listen
EXPOSE 8080 8081 9090
ENTRYPOINT ["spawner"]
CMD ["--help"]
