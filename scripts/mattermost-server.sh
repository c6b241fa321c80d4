#!/usr/bin/env bash
# Installs a real Mattermost server from Go's module proxy, for the conformance suite and the
# end-to-end test (test/helpers/real-mattermost.ts starts and stops it).
#
#   scripts/mattermost-server.sh install   builds it once per version into $MM_CACHE_DIR/<version>/
#   scripts/mattermost-server.sh paths     prints MM_SERVER_BIN=… and MM_SERVER_DIR=… (after install)
#   scripts/mattermost-server.sh version   prints the pinned version
#
# Exit codes: 0 done, 3 SKIP (the proxy or the build failed: the reason is printed loudly),
# 2 usage. Idempotent: a version already built is not built again.
#
# Why not `go install …/cmd/mattermost@v`: the server module's go.mod has `exclude` lines, which
# `go install pkg@version` refuses; and at the pinned commit its go.mod requires a
# server/public (v0.1.20) older than the code (`undefined: model.ReadReceipt`): the monorepo builds
# with a Go workspace. A `replace` to the server/public pseudo-version of the same day fixes that.
set -euo pipefail

# Mattermost 11.4 (master of 2026-01-13): the newest server commit the module proxy here serves.
MM_MODULE=github.com/mattermost/mattermost/server/v8
MM_VERSION="${MM_VERSION:-v8.0.0-20260113162330-9e1d4c2072c0}"
MM_PUBLIC_VERSION="${MM_PUBLIC_VERSION:-v0.1.22-0.20260113165922-8e4cadbc88ee}"
MM_CACHE_DIR="${MM_CACHE_DIR:-/var/cache/mmserver}"
# The checksum database does not know these pseudo-versions.
export GONOSUMDB="${GONOSUMDB:-github.com/mattermost/mattermost}"

SKIP=3
dir="$MM_CACHE_DIR/$MM_VERSION"
bin="$dir/bin/mattermost"
src="$dir/src"

skip() {
  echo "************************************************************" >&2
  echo "SKIP: real Mattermost server not installed: $*" >&2
  echo "************************************************************" >&2
  exit "$SKIP"
}

install() {
  if [ -x "$bin" ] && [ -d "$src/i18n" ]; then
    echo "mattermost $MM_VERSION already built: $bin"
    return 0
  fi
  command -v go >/dev/null 2>&1 || skip "no go toolchain on PATH"
  mkdir -p "$dir"
  # One build at a time per cache directory (CI runs and helpers may race).
  exec 9>"$dir/.lock"
  flock 9
  if [ -x "$bin" ] && [ -d "$src/i18n" ]; then
    echo "mattermost $MM_VERSION built meanwhile: $bin"
    return 0
  fi
  local log="$dir/build.log"
  echo "== downloading $MM_MODULE@$MM_VERSION (log: $log)"
  local mod
  if ! mod=$(go mod download -json "$MM_MODULE@$MM_VERSION" 2>>"$log"); then
    # -json reports the proxy's refusal in its "Error" field on stdout.
    skip "go mod download $MM_MODULE@$MM_VERSION failed: $(printf '%s' "$mod" | sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' | head -c 400) $(tail -c 300 "$log")"
  fi
  local moddir
  moddir=$(printf '%s' "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [ -d "$moddir" ] || skip "go mod download printed no module directory: $(printf '%s' "$mod" | head -c 400)"
  rm -rf "$src.tmp"
  cp -r "$moddir" "$src.tmp"
  chmod -R u+w "$src.tmp"
  (
    cd "$src.tmp"
    go mod edit -replace "github.com/mattermost/mattermost/server/public=github.com/mattermost/mattermost/server/public@$MM_PUBLIC_VERSION"
  )
  echo "== building ./cmd/mattermost (first time: ~15 min on 2 cores; then the Go build cache makes it quick)"
  if ! (cd "$src.tmp" && GOFLAGS=-mod=mod go build -o "$dir/bin/mattermost.tmp" ./cmd/mattermost) >>"$log" 2>&1; then
    skip "go build ./cmd/mattermost failed: $(tail -c 600 "$log")"
  fi
  rm -rf "$src"
  mv "$src.tmp" "$src"
  mv "$dir/bin/mattermost.tmp" "$bin"
  echo "mattermost $MM_VERSION built: $bin"
}

case "${1:-}" in
  install) install ;;
  paths)
    [ -x "$bin" ] || { echo "not installed: run $0 install" >&2; exit "$SKIP"; }
    echo "MM_SERVER_BIN=$bin"
    echo "MM_SERVER_DIR=$src"
    ;;
  version) echo "$MM_VERSION" ;;
  *)
    echo "usage: $0 install|paths|version" >&2
    exit 2
    ;;
esac
