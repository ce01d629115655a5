#!/bin/sh
# Installs runnel's build dependencies from Debian's packages, only when missing.
#
#   scripts/install-deps.sh          the build and test dependencies (DESIGN.md §2), and
#                                    kafkajs for the Kafka client tests (npm ci)
#   scripts/install-deps.sh fuzz     also clang's libFuzzer runtime, for `make fuzz`
#   scripts/install-deps.sh bench    also redis-server, redis-benchmark, gnuplot and jq, for
#                                    `make bench` (the peers and the charts)
#
# Each library is looked up with pkg-config; the script does nothing when all are
# present, and otherwise runs apt-get (as root, or through sudo when available).
set -eu

missing=""
need() { # need PKGCONFIG_NAME DEBIAN_PACKAGE...
    name=$1; shift
    if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists "$name"; then
        missing="$missing $*"
    fi
}
need_cmd() { # need_cmd COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
}

need_cmd pkg-config pkg-config
need_cmd cc gcc
need_cmd make make
need sqlite3       libsqlite3-dev
# streamsql's regular expressions (REGEXP, regexp_extract, ...; streamsql/fn.c).
need libpcre2-8    libpcre2-dev
need libuv         libuv1-dev
need liblz4        liblz4-dev
need zlib          zlib1g-dev
need libzstd       libzstd-dev
# snappy: no pkg-config file in some releases, so look for its C header.
[ -f /usr/include/snappy-c.h ] || missing="$missing libsnappy-dev"
need libprotobuf-c libprotobuf-c-dev
need_cmd protoc-c  protobuf-c-compiler
need grpc          libgrpc-dev
# OpenSSL's PEM parser checks TLS certificate and key files (client/tls.c); the
# openssl command makes the test certificates of tests/test_tls.c.
need libcrypto     libssl-dev
need_cmd openssl   openssl
need cmocka        libcmocka-dev
# runneld's /metrics endpoint; a real Prometheus (and promtool) scrapes it in
# tests/test_metrics.c.
need libmicrohttpd libmicrohttpd-dev
need_cmd prometheus prometheus
# Real Kafka clients for the Kafka front's tests (and librdkafka for the
# benchmark); Debian's python3 modules, run with /usr/bin/python3.
need_cmd kcat      kcat
need_cmd python3   python3         # also test_cli: decodes consume --format json (json, base64)
need_py() { # need_py MODULE DEBIAN_PACKAGE
    /usr/bin/python3 -c "import $1" >/dev/null 2>&1 || missing="$missing $2"
}
need_py confluent_kafka python3-confluent-kafka
need_py kafka      python3-kafka
need_py snappy     python3-snappy      # kafka-python's codecs
need_py lz4        python3-lz4
need_py zstandard  python3-zstandard
need rdkafka       librdkafka-dev
# kafkajs runs on Node.js; its package (pinned in tests/kafka/js/package-lock.json)
# comes from the npm registry, installed after the Debian packages below.
need_cmd node      nodejs
need_cmd npm       npm

# npm_deps: tests/kafka/js/node_modules from the lock file, when missing.
npm_deps() {
    js="$(dirname "$0")/../tests/kafka/js"
    [ -d "$js/node_modules/kafkajs" ] && [ -d "$js/node_modules/kafkajs-snappy" ] && return 0
    echo "install-deps: npm ci in tests/kafka/js" >&2
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) >&2
}

if [ "${1:-}" = fuzz ]; then
    need_cmd clang clang
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 \
        || missing="$missing libclang-rt-14-dev"
fi

if [ "${1:-}" = bench ]; then
    need_cmd redis-server    redis-server
    need_cmd redis-benchmark redis-tools
    need_cmd gnuplot         gnuplot-nox
    need_cmd jq              jq
fi

if [ -z "$missing" ]; then npm_deps; exit 0; fi

echo "install-deps: installing$missing" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install-deps: need root to install:$missing" >&2; exit 1; }
    sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
npm_deps
echo "install-deps: done" >&2
