#!/usr/bin/env bash
# Install the Debian packages edgeauth needs to build, test and run the demo.
# Idempotent and quiet when everything is already there.
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config        # toolchain
    clang libclang-rt-14-dev                # sanitizers + libFuzzer (make check)
    libssl-dev openssl                      # OpenSSL 3 (crypto for everything) + CLI for tests
    libcmocka-dev                           # unit tests
    libjson-c-dev                           # reading the shared test vectors
    procps iproute2 coreutils jq python3    # test tools: pgrep/pkill, ss, stdbuf, jq, a byte flip
    curl                                    # a real program using the provider (tests)
    mosquitto mosquitto-clients             # the cloud broker and real MQTT clients
    mosquitto-dev libmosquitto-dev          # broker plugin API, device agent
    libsqlite3-dev sqlite3                  # device registry
)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "edgeauth: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "edgeauth: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
