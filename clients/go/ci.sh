#!/bin/sh
# Checks the Go client: gofmt, go vet, and the tests (with the race
# detector) against a real tenure binary.
#
#   clients/go/ci.sh [TENURE_BINARY]
#
# TENURE_BINARY defaults to target/debug/tenure at the repository's root
# (`cargo test` builds it). Go is installed from Debian's packages when it
# is missing; nothing else is fetched from the network.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

bin=${1:-target/debug/tenure}
case $bin in
/*) ;;
*) if [ -e "$bin" ]; then bin=$(pwd)/$bin; else bin=$root/$bin; fi ;;
esac
if [ ! -x "$bin" ]; then
	echo "ci.sh: no tenure binary at $bin (build it first, e.g. cargo test)" >&2
	exit 1
fi

# Install a package from Debian's archive, as root or through sudo, with
# an apt-get update only when the first try fails (a stale package list).
apt_install() {
	if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y "$@" || { $sudo apt-get update && $sudo apt-get install -y "$@"; }
}

if ! command -v go >/dev/null 2>&1; then
	echo "ci.sh: installing Go (golang-go)" >&2
	apt_install golang-go
fi
# The race detector needs cgo, and so a C compiler.
if ! command -v gcc >/dev/null 2>&1; then
	echo "ci.sh: installing gcc, for go test -race" >&2
	apt_install gcc
fi

# The module has no dependencies: forbid any download, of modules or of a
# newer toolchain.
export GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=1

cd "$here"
go version
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "ci.sh: not gofmt-formatted:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
TENURE_BIN=$bin go test -race -count=1 -timeout 300s ./...
