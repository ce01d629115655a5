#!/bin/sh
# The demo behind `make cluster-demo`: three runneld nodes on loopback form a
# cluster (cluster/README.md), `runnel cluster status` shows the controller
# leader and the nodes, the leader is killed (kill -9), the two others elect
# a new one and fence the dead node, the node restarts and rejoins, and all
# three stop with SIGTERM (each must exit 0). Only the controller is
# replicated in this slice: no records are produced here.
#
#   sh scripts/cluster-demo.sh BIN_DIR       (make cluster-demo passes bin/)
#   CLUSTER_DEMO_PORT=19101                  the first raft port (three in a row)
set -eu

bin=${1:-bin}
base=${CLUSTER_DEMO_PORT:-19101}
work=$(mktemp -d /tmp/runnel-cluster-demo.XXXXXX)
spec="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
root=""
[ "$(id -u)" = 0 ] && root=--allow-root

step() { printf '\n== %s\n' "$*"; }
port() { head -n 1 "$work/port$1"; }
status() { printf '$ runnel --server 127.0.0.1:%s cluster status\n' "$(port "$1")";
    "$bin/runnel" --server "127.0.0.1:$(port "$1")" cluster status; }
leader_of() { "$bin/runnel" --server "127.0.0.1:$(port "$1")" cluster status --format json \
    2>/dev/null | head -n 1 | sed -n 's/.*"leader":\([0-9]*\).*/\1/p'; }
start() {
    rm -f "$work/port$1"
    "$bin/runneld" --data "$work/node$1" --listen 127.0.0.1:0 --port-file "$work/port$1" \
        --node-id "$1" --cluster "$spec" $root 2>>"$work/node$1.log" &
    echo $! > "$work/pid$1"
    i=0
    while [ ! -s "$work/port$1" ]; do
        i=$((i + 1)); [ $i -le 200 ] || { echo "node $1 did not start:"; cat "$work/node$1.log"; exit 1; }
        sleep 0.05
    done
}
# wait_leader NODE NOT: until NODE knows a leader other than NOT; prints it
wait_leader() {
    i=0
    while :; do
        l=$(leader_of "$1")
        if [ -n "$l" ] && [ "$l" != "$2" ]; then echo "$l"; return 0; fi
        i=$((i + 1)); [ $i -le 400 ] || { echo "no leader" >&2; exit 1; }
        sleep 0.05
    done
}
cleanup() {
    for n in 1 2 3; do
        [ -f "$work/pid$n" ] && kill "$(cat "$work/pid$n")" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

step "Starting three nodes (raft $spec), data in $work"
for n in 1 2 3; do start $n; done
leader=$(wait_leader 1 0)
sleep 0.5                                   # every node registered
status 1

step "kill -9 of the controller leader, node $leader"
t0=$(date +%s%N)
kill -9 "$(cat "$work/pid$leader")"
wait "$(cat "$work/pid$leader")" 2>/dev/null || true
rm -f "$work/pid$leader"
other=1; [ "$leader" = 1 ] && other=2
new=$(wait_leader $other "$leader")
t1=$(date +%s%N)
echo "node $new leads after $(( (t1 - t0) / 1000000 )) ms"
sleep 2                                     # the dead node is fenced after 1.5 s of silence
status $other

step "Node $leader restarts and rejoins"
start "$leader"
sleep 1
status "$leader"

step "Stopping the three nodes (SIGTERM; each must exit 0)"
for n in 1 2 3; do
    pid=$(cat "$work/pid$n")
    kill "$pid"
    if wait "$pid"; then echo "node $n stopped cleanly"; else echo "node $n exited $?"; exit 1; fi
    rm -f "$work/pid$n"
done
