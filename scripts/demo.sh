#!/bin/sh
# The demo behind `make demo`: on an embedded data directory, create a topic,
# produce 1,000,000 realistic JSON log records in batches, then read them back
# by queue+offset and by timestamp, saying what each step did and how fast.
# Then move a queue to a second store (a remap: no data copied, offsets kept),
# produce more, consume as a group, take a checkpoint and replay from it twice.
# Last, the broker: runneld on a free loopback port over a fresh data
# directory, the same records produced and read back with `runnel --server`,
# and runneld stopped with SIGTERM (it must exit 0).
#
#   sh scripts/demo.sh BIN_DIR          (make demo passes bin/)
#   DEMO_RECORDS=200000 make demo       a smaller run
#   DEMO_BROKER_RECORDS=300000          records of the broker section
set -eu

bin=${1:-bin}
runnel="$bin/runnel"
data=${DEMO_DATA:-demo-data}
records=${DEMO_RECORDS:-1000000}
input=$data.jsonl

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { s = b - a; if (s <= 0) s = 1e-9;
    printf "%d records in %.2f s = %.0f records/s", n, s, n / s }'; }
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

rm -rf "$data" "$input"

step "Generating $records JSON log records (12 services, 1 hour of event time)"
# Event time starts at 2026-11-20T00:00:00Z and advances ~3.6 ms a record, with
# jitter so that records from different hosts arrive slightly out of order.
awk -v n="$records" 'BEGIN {
    srand(42);
    split("checkout cart search auth payments inventory shipping reviews users gateway email recommend", svc, " ");
    split("DEBUG INFO INFO INFO INFO INFO WARN ERROR", lvl, " ");
    split("GET POST PUT DELETE", verb, " ");
    split("/api/cart /api/items /api/login /api/orders /api/search /healthz", path, " ");
    base = 1795132800000; step = 3600000 / n;
    for (i = 0; i < n; i++) {
        ts = int(base + i * step + rand() * 50);
        s = svc[1 + int(rand() * 12)]; l = lvl[1 + int(rand() * 8)];
        st = (l == "ERROR") ? 500 : (rand() < 0.05 ? 404 : 200);
        printf "{\"ts\":%.0f,\"level\":\"%s\",\"service\":\"%s\",\"host\":\"web-%02d\",\"latency_ms\":%d,\"msg\":\"%s %s %d\",\"trace\":\"%08x%08x\"}\n",
            ts, l, s, 1 + int(rand() * 16), int(rand() * rand() * 900) + 1,
            verb[1 + int(rand() * 4)], path[1 + int(rand() * 6)], st,
            int(rand() * 2147483647), int(rand() * 2147483647);
    }
}' > "$input"
head -n 2 "$input"
printf '%s bytes\n' "$(wc -c < "$input" | tr -d ' ')"

step "Creating topic 'logs' with 4 queues in $data/"
show "$runnel" --data "$data" topic create logs --queues 4

step "Producing: batches of 64 KiB keyed by service, event time from the ts field, group commit"
t0=$(now)
show "$runnel" --data "$data" produce logs --key-field service --timestamp-field ts \
    --batch-bytes 65536 --fsync group < "$input"
t1=$(now)
echo "produce: $(rate "$records" "$t0" "$t1") (wall clock, including process start)"

step "What the store holds"
show "$runnel" --data "$data" topic describe logs

at=$((records / 10))
step "Reading by queue and offset: 3 records of queue 2 from offset $at"
show "$runnel" --data "$data" consume logs --queue 2 --from "$at" --count 3 --format json

mid=1795134600000   # 2026-11-20T00:30:00Z, the middle of the hour
step "Reading by timestamp: the first records of queue 1 at or after $mid (00:30:00Z)"
show "$runnel" --data "$data" consume logs --queue 1 --from "@$mid" --count 3 --format json

step "Reading everything back, queue by queue"
total=0
t0=$(now)
for q in 0 1 2 3; do
    n=$("$runnel" --data "$data" consume logs --queue "$q" --from earliest | wc -l)
    echo "queue $q: $n records"
    total=$((total + n))
done
t1=$(now)
echo "consume: $(rate "$total" "$t0" "$t1") (wall clock, values printed to a pipe)"
if [ "$total" -ne "$records" ]; then
    echo "demo: read back $total records but produced $records" >&2
    exit 1
fi

step "Stream SQL over the whole topic: errors of one service in 10-minute windows"
streamsql="$bin/streamsql"
show "$streamsql" --data "$data" -e "CREATE STREAM logs_s (level TEXT, service TEXT, host TEXT,
    latency_ms INTEGER, msg TEXT) WITH (topic = 'logs', format = 'json')"
t0=$(now)
show "$streamsql" --data "$data" -e "SELECT window_start, service, count(*) AS n,
    avg(latency_ms) AS avg_ms, max(latency_ms) AS max_ms FROM logs_s
    WHERE level = 'ERROR' AND service = 'payments' GROUP BY TUMBLE(ts, '10m'), service"
t1=$(now)
echo "streamsql: $(rate "$records" "$t0" "$t1") aggregated (wall clock, including process start)"

step "Remapping queue 2 to a second store ($data/stores/ssd): no data is copied, offsets stay"
show "$runnel" --data "$data" queue remap logs 2 --store "$data/stores/ssd"

more=20000
step "Producing $more more records; queue 2's share lands in its new mapping item"
tail -n "$more" "$input" | show "$runnel" --data "$data" produce logs --key-field service \
    --timestamp-field ts
show "$runnel" --data "$data" topic describe logs
show "$runnel" --data "$data" store list

step "Consumer group 'dash': read 1000 records (queues round-robin by batch), committing"
"$runnel" --data "$data" consume logs --group dash --count 1000 > /dev/null
show "$runnel" --data "$data" group offsets dash
show "$runnel" --data "$data" checkpoint create dash before-spike

step "The group reads on (5000 more records), then replays queue 2 from the checkpoint twice"
"$runnel" --data "$data" consume logs --group dash --count 5000 > /dev/null
show "$runnel" --data "$data" group offsets dash
replay() { "$runnel" --data "$data" consume logs --queue 2 --from checkpoint:before-spike; }
t0=$(now)
first=$(replay | cksum)
t1=$(now)
second=$(replay | cksum)
n=$(replay | wc -l | tr -d ' ')
echo "replay 1: cksum $first (CRC, bytes)"
echo "replay 2: cksum $second"
echo "queue 2 from the checkpoint, across its remap boundary: $n records; $(rate "$n" "$t0" "$t1")"
if [ "$first" != "$second" ]; then
    echo "demo: the two replays differ" >&2
    exit 1
fi

step "The broker: runneld on a free loopback port, over a fresh data directory ($data-broker/)"
broker_records=${DEMO_BROKER_RECORDS:-300000}
if [ "$broker_records" -gt "$records" ]; then broker_records=$records; fi
bdata=$data-broker
rm -rf "$bdata"
# runneld refuses to run as root unless told --allow-root (README, Security).
allow_root=; [ "$(id -u)" = 0 ] && allow_root=--allow-root
"$bin/runneld" --data "$bdata" --listen 127.0.0.1:0 --port-file "$bdata.port" $allow_root \
    --log-level warn 2> "$bdata.log" &
runneld_pid=$!
stop_broker() { kill "$runneld_pid" 2>/dev/null || true; }
trap stop_broker EXIT
i=0
while [ ! -s "$bdata.port" ]; do
    i=$((i + 1))
    if [ "$i" -gt 200 ]; then echo "demo: runneld did not start; see $bdata.log" >&2; exit 1; fi
    sleep 0.05
done
server=127.0.0.1:$(cat "$bdata.port")
echo "runneld (pid $runneld_pid) listens on $server"
show "$runnel" --server "$server" topic create logs --queues 4

step "Producing $broker_records records over gRPC: batches of 64 KiB keyed by service, acked after group commit"
t0=$(now)
head -n "$broker_records" "$input" | show "$runnel" --server "$server" produce logs \
    --key-field service --timestamp-field ts --batch-bytes 65536
t1=$(now)
echo "produce over gRPC: $(rate "$broker_records" "$t0" "$t1") (wall clock, including process start)"

step "Reading over gRPC by queue and offset, then by timestamp"
show "$runnel" --server "$server" consume logs --queue 2 --from 1000 --count 2 --format json
show "$runnel" --server "$server" consume logs --queue 1 --from @1795133700000 --count 2 --format json

step "Reading everything back over gRPC (all queues, round-robin by batch)"
t0=$(now)
n=$("$runnel" --server "$server" consume logs | wc -l | tr -d ' ')
t1=$(now)
echo "consume over gRPC: $(rate "$n" "$t0" "$t1") (wall clock, values printed to a pipe)"
if [ "$n" -ne "$broker_records" ]; then
    echo "demo: read back $n records over gRPC but produced $broker_records" >&2
    exit 1
fi
show "$runnel" --server "$server" topic describe logs

step "Stopping runneld with SIGTERM: it finishes in-flight calls, fsyncs, exits 0"
kill -TERM "$runneld_pid"
status=0
wait "$runneld_pid" || status=$?
trap - EXIT
echo "runneld exit status: $status"
if [ "$status" -ne 0 ]; then
    echo "demo: runneld exited with $status; see $bdata.log" >&2
    exit 1
fi
rm -f "$bdata.port" "$bdata.log"

step "Done: $records records produced and all $total read back; the data directory is $data/"
echo "over gRPC: $broker_records records produced and read back; the broker's data directory is $bdata/"
rm -f "$input"
