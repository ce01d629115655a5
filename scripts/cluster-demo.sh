#!/bin/sh
# The demo behind `make cluster-demo`: three runneld nodes on loopback form a
# cluster (cluster/README.md); a topic replicated on all three is created; a
# producer writes to it continuously and a consumer follows it, both given
# the three nodes (`--server A,B,C`); the queue's leader is killed (kill -9);
# production and consumption go on through the new leader (printed: records
# acknowledged and consumed before and after, and the gap); the dead node
# restarts and rejoins; the producer's input ends (every line must be
# acknowledged), the consumer must have every line once and in order, and
# the three nodes stop with SIGTERM (each must exit 0).
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
    touch "$work/stop"
    [ -n "${consumer:-}" ] && kill "$consumer" 2>/dev/null || true
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
servers="127.0.0.1:$(port 1),127.0.0.1:$(port 2),127.0.0.1:$(port 3)"
status 1

step "A topic replicated on the three nodes (retried while the cluster settles)"
echo "$ runnel --server $servers topic create demo --queues 1 --replicas 3"
"$bin/runnel" --server "$servers" topic create demo --queues 1 --replicas 3

step "A producer and a follower running (--server $servers)"
( i=0
  while [ ! -f "$work/stop" ]; do
      i=$((i + 1)); echo "record-$i"
      [ $((i % 10)) -eq 0 ] && sleep 0.02
  done
  echo "$i" > "$work/sent" ) |
    "$bin/runnel" --server "$servers" produce demo --queue 0 --delivery-timeout-ms 30000 \
        2> "$work/produce.err" &
producer=$!
"$bin/runnel" --server "$servers" consume demo --queue 0 --follow > "$work/consumed" \
    2> "$work/consume.err" &
consumer=$!
sleep 2
qleader=$("$bin/runnel" --server "127.0.0.1:$(port 1)" cluster status --format json |
    sed -n 's/.*"kind":"queue".*"leader":\([0-9]*\).*/\1/p' | head -n 1)
status 1 | tail -n 2
before=$(wc -l < "$work/consumed")
echo "consumed so far: $before records"

step "kill -9 of node $qleader, the leader of demo/0"
kill -9 "$(cat "$work/pid$qleader")"
wait "$(cat "$work/pid$qleader")" 2>/dev/null || true
rm -f "$work/pid$qleader"
t0=$(date +%s%N)
c0=$(wc -l < "$work/consumed")
i=0
while [ "$(wc -l < "$work/consumed")" -le "$c0" ]; do
    i=$((i + 1)); [ $i -le 600 ] || { echo "consumption did not resume"; exit 1; }
    sleep 0.02
done
t1=$(date +%s%N)
echo "new records consumed $(( (t1 - t0) / 1000000 )) ms after the kill (acknowledged by the new leader)"
mark=$(wc -l < "$work/consumed")
sleep 1
[ "$(wc -l < "$work/consumed")" -gt "$mark" ] || { echo "consumption stopped"; exit 1; }
echo "records still arriving: $(wc -l < "$work/consumed") consumed now"
other=1; [ "$qleader" = 1 ] && other=2
status $other | tail -n 2

step "Node $qleader restarts and rejoins"
start "$qleader"
sleep 3
status "$qleader" | tail -n 2

step "The producer's input ends: every line acknowledged, consumed once, in order"
touch "$work/stop"
wait "$producer" || { echo "the producer failed:"; cat "$work/produce.err"; exit 1; }
cat "$work/produce.err"
sent=$(cat "$work/sent")
i=0
while [ "$(wc -l < "$work/consumed")" -lt "$sent" ]; do
    i=$((i + 1)); [ $i -le 200 ] || break
    sleep 0.05
done
kill "$consumer"; wait "$consumer" 2>/dev/null || true
seq 1 "$sent" | sed 's/^/record-/' > "$work/want"
if cmp -s "$work/want" "$work/consumed"; then
    echo "the consumer read all $sent records once, in order, across the failover"
else
    echo "the consumer's records differ from the $sent produced:"; diff "$work/want" "$work/consumed" | head
    exit 1
fi

step "Stopping the three nodes (SIGTERM; each must exit 0)"
for n in 1 2 3; do
    pid=$(cat "$work/pid$n")
    kill "$pid"
    if wait "$pid"; then echo "node $n stopped cleanly"; else echo "node $n exited $?"; exit 1; fi
    rm -f "$work/pid$n"
done
