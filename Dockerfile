# syntax=docker/dockerfile:1
#
# The tollgate image: one static binary (tollgate, with tollgatectl beside
# it) on distroless/static, running as the nonroot user (65532). The Helm
# chart runs it as the control plane, the ext_proc sidecar and the migration
# Job. Build from the repository root (docs/kubernetes.md):
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ghcr.io/tollgate-dev/tollgate:0.1.0 .

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS TARGETARCH
# CGO off: the SQLite driver is pure Go (modernc.org/sqlite), so the binary
# is static and needs no libc in the image.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X github.com/tollgate-dev/tollgate/cmd/internal/tollgatecmd.Version=${VERSION} -X github.com/tollgate-dev/tollgate/cmd/internal/ctl.Version=${VERSION}" \
      -o /out/ ./cmd/tollgate ./cmd/tollgatectl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tollgate /out/tollgatectl /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tollgate"]
