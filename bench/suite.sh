#!/bin/sh
# bench/suite.sh — `make bench`: runnel against its peers on this machine, in one run.
#
#   sh bench/suite.sh [BIN]          BIN holds runnel-bench and runneld (default bin)
#   BENCH_QUICK=1 sh bench/suite.sh  smaller sizes: ~1 minute instead of 2.5-4 (2 shared cores)
#
# Why a shell driver rather than a `runnel-bench suite` subcommand: the suite
# starts and stops a foreign server (redis-server), runs a foreign client
# (redis-benchmark) and gnuplot, and traps failures to clean up; every figure
# itself still comes from one `runnel-bench CMD --json` (C, bench/*.c), so the
# driver measures nothing on its own.
#
# Steps: each line of the plan below is one `runnel-bench` run with --json; its
# JSON lines are tagged with the step name and the 1-minute load average, and
# collected into bench/results.json. bench/report.sh then draws bench/charts/*.png
# and regenerates the marked section of bench/RESULTS.md.
#
# Redis: redis-server on 127.0.0.1, a free port, a temporary directory, no
# persistence (--save '' --appendonly no: Redis at its fastest). A runneld with
# --fsync never (the same durability) serves the produce_never steps; the other
# network steps start their own runneld (default group commit). Both servers
# are stopped on exit, failure or interrupt (trap).
set -eu

BIN=${1:-bin}
B=$BIN/runnel-bench
QUICK=${BENCH_QUICK:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_JSON=$HERE/results.json

sh "$HERE/../scripts/install-deps.sh" bench

[ -x "$B" ] || { echo "suite: $B is missing; run make first" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/runnel-suite.XXXXXX)
REDIS_PID=""
RUNNELD_PID=""
cleanup() {
    if [ -n "$RUNNELD_PID" ]; then
        kill "$RUNNELD_PID" 2>/dev/null || true
        wait "$RUNNELD_PID" 2>/dev/null || true
        RUNNELD_PID=""
    fi
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "suite: interrupted" >&2; exit 130' INT TERM

# Redis on a free loopback port (at most 20 tries).
start_redis() {
    mkdir -p "$WORK/redis"
    i=0
    while [ $i -lt 20 ]; do
        port=$((20000 + ($$ + i * 7919) % 30000))
        redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis" --save '' \
            --appendonly no --daemonize no --logfile "$WORK/redis/log" &
        REDIS_PID=$!
        n=0
        while [ $n -lt 50 ]; do
            if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
                REDIS_PORT=$port
                return 0
            fi
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
            n=$((n + 1))
        done
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
        i=$((i + 1))
    done
    echo "suite: could not start redis-server (see $WORK/redis/log)" >&2
    return 1
}

# runneld --fsync never on a free loopback port (waits at most 10 s).
start_runneld() {
    mkdir -p "$WORK/runneld"
    # runneld refuses to run as root without --allow-root.
    allow_root=; [ "$(id -u)" = 0 ] && allow_root=--allow-root
    "$BIN/runneld" --data "$WORK/runneld/data" --listen 127.0.0.1:0 --fsync never $allow_root \
        --port-file "$WORK/runneld/port" --log-level warn > "$WORK/runneld/log" 2>&1 &
    RUNNELD_PID=$!
    n=0
    while [ $n -lt 100 ]; do
        if [ -s "$WORK/runneld/port" ]; then
            RUNNELD_ADDR=127.0.0.1:$(cat "$WORK/runneld/port")
            return 0
        fi
        kill -0 "$RUNNELD_PID" 2>/dev/null || break
        sleep 0.1
        n=$((n + 1))
    done
    echo "suite: could not start runneld (see $WORK/runneld/log)" >&2
    return 1
}

# Sizes. Full: 2.5-4 minutes on 2 shared cores (measured); quick: ~1 minute.
if [ "$QUICK" = 1 ]; then
    N=300000; ROUNDS=2; CURVE_BYTES=33554432; CURVE_MAX=300000; QN=100000
    LOOKUP_BATCHES=200000; SQLN=300000; RECOVER=64,256; PRODN=300000; E2E_S=2
    QUEUES="1 100 1000 10000"; PRODUCERS="1 2 4"
else
    N=2000000; ROUNDS=3; CURVE_BYTES=134217728; CURVE_MAX=1000000; QN=500000
    LOOKUP_BATCHES=1000000; SQLN=2000000; RECOVER=128,512,2048; PRODN=1000000; E2E_S=5
    QUEUES="1 10 100 1000 10000"; PRODUCERS="1 2 4 8"
fi
SIZES="16 64 256 1024 4096 16384"
BATCHES="1024 4096 16384 65536 262144 1048576"

# The plan: "step|runnel-bench arguments" (REDIS is replaced by the port).
PLAN=$WORK/plan
{
    echo "memcpy|memcpy --mb 256 --rounds 5"
    echo "append_never|append --records $N --size 100 --fsync never --rounds $ROUNDS"
    echo "append_group|append --records $N --size 100 --fsync group --rounds $ROUNDS"
    echo "read|read --records $N --size 100 --rounds $ROUNDS"
    echo "sqlite|sqlite-log --records $N --size 100 --txn 1000 --rounds $ROUNDS"
    echo "redis|redis --port REDIS --records $N --size 100 --pipeline 1000 --count 1000 --rounds $ROUNDS"
    echo "redis_benchmark|-"
    echo "lookup|lookup --batches $LOOKUP_BATCHES"
    # No --rounds in the network benches: three runs each, the report takes the median.
    # produce_never: a runneld of the suite's own with --fsync never, the same
    # durability as the Redis peer (no persistence); produce: the bench's own
    # runneld with the default group commit (acks after fdatasync).
    for r in 1 2 3; do
        echo "produce|produce --records $N --size 100"
        echo "produce_never|produce --server RUNNELD --topic never$r --records $N --size 100 --no-baseline"
        echo "consume|consume --records $N --size 100"
    done
    echo "e2e|e2e --rate 100000 --seconds $E2E_S"
    echo "sql|sql --records $SQLN --rounds $ROUNDS"
    for s in $SIZES; do
        n=$((CURVE_BYTES / s)); [ $n -gt $CURVE_MAX ] && n=$CURVE_MAX
        echo "size_runnel|append --records $n --size $s --fsync never --rounds $ROUNDS"
        echo "size_sqlite|sqlite-log --records $n --size $s --rounds 1"
        echo "size_redis|redis --port REDIS --records $n --size $s --rounds 1"
    done
    for k in $BATCHES; do
        echo "batch|append --records $N --size 100 --batch-bytes $k --fsync never --rounds $ROUNDS"
    done
    for q in $QUEUES; do
        echo "queues|queues --records $QN --size 100 --batch-bytes 4096 --queues $q --rounds 1"
    done
    for p in $PRODUCERS; do
        echo "producers|produce --records $PRODN --size 100 --producers $p --queues 8"
    done
    echo "recover|recover --sizes $RECOVER"
} > "$PLAN"

TOTAL=$(wc -l < "$PLAN")
RAW=$WORK/results.jsonl
: > "$RAW"
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "suite: $TOTAL steps$( [ "$QUICK" = 1 ] && echo ' (BENCH_QUICK=1)'); load average $LOAD0; notes in $WORK/notes.log"
start_redis
start_runneld
echo "suite: runneld --fsync never on $RUNNELD_ADDR (for produce_never)"
echo "suite: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$REDIS_PORT (no persistence)"

# tag STEP: add the step name and the load average to each JSON line.
tag() {
    jq -c --arg s "$1" --argjson l "$(cut -d' ' -f1 /proc/loadavg)" '. + {step: $s, load1: $l}'
}

i=0
while IFS='|' read -r step args; do
    i=$((i + 1))
    printf 'suite: [%2d/%d] %-16s %s  (t=%ds, load %s)\n' "$i" "$TOTAL" "$step" \
        "$args" "$(($(date +%s) - T0))" "$(cut -d' ' -f1 /proc/loadavg)"
    if [ "$step" = redis_benchmark ]; then
        # Redis's own client, for the peer's best case: 50 connections, -P 1000,
        # the same count and a 100-byte value (a constant: redis-benchmark's).
        v=$(printf '%0100d' 0)
        rps=$(redis-benchmark -p "$REDIS_PORT" -n "$N" -P 1000 -c 50 --csv XADD rbench '*' v "$v" \
              2>>"$WORK/notes.log" < /dev/null | awk -F'"' 'NR == 2 { print $4 }')
        redis-cli -p "$REDIS_PORT" DEL rbench >/dev/null
        [ -n "$rps" ] || { echo "suite: redis-benchmark gave no figure" >&2; exit 1; }
        printf '{"bench":"redis_benchmark_xadd","records":%s,"size":100,"pipeline":1000,"clients":50,"records_per_s":%s}\n' \
            "$N" "$rps" | tag "$step" >> "$RAW"
        continue
    fi
    # shellcheck disable=SC2086
    set -- $(echo "$args" | sed "s/REDIS/$REDIS_PORT/; s/RUNNELD/$RUNNELD_ADDR/")
    if ! "$B" "$@" --json 2>>"$WORK/notes.log" > "$WORK/out" < /dev/null; then
        echo "suite: step $step failed: $B $* (last notes below)" >&2
        tail -5 "$WORK/notes.log" >&2
        exit 1
    fi
    tag "$step" < "$WORK/out" >> "$RAW"
done < "$PLAN"

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - T0))
jq -s --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" --arg load0 "$LOAD0" --arg load1 "$LOAD1" \
   --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')" --argjson ncpu "$(nproc)" \
   --arg commit "$(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo unknown)" \
   --argjson elapsed "$ELAPSED" --argjson quick "$QUICK" \
   --arg redis "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')" \
   '{machine: {date: $date, commit: $commit, cpu: $cpu, cores: $ncpu, load_start: $load0,
               load_end: $load1, elapsed_s: $elapsed, quick: $quick, redis: $redis},
     results: .}' "$RAW" > "$OUT_JSON"
echo "suite: done in ${ELAPSED}s; load average $LOAD0 at the start, $LOAD1 at the end"
sh "$HERE/report.sh" "$OUT_JSON"
