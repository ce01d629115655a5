#!/bin/sh
# bench/report.sh — turn bench/results.json (written by bench/suite.sh) into
# bench/charts/*.png (gnuplot) and the generated section of bench/RESULTS.md.
#
#   sh bench/report.sh [bench/results.json]
#
# It computes nothing but ratios of figures measured in that one run: every
# number it prints is read from results.json. In RESULTS.md only the lines
# between "<!-- suite:begin -->" and "<!-- suite:end -->" are replaced (the
# section is appended when the markers are missing); the hand-written text
# around them is kept as it is.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
J=${1:-$HERE/results.json}
CH=$HERE/charts
MD=$HERE/RESULTS.md
TMP=$(mktemp -d /tmp/runnel-report.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$CH"

# q FILTER: jq over results.json with helpers:
#   one(step; bench)   the first result of that step and bench
#   rps(step; bench)   its records_per_s
#   best_redis         the better of our client's and redis-benchmark's XADD
Q='
   def med(v): (v | sort) as $v | if ($v | length) == 0 then null
               elif ($v | length) % 2 == 1 then $v[($v | length - 1) / 2]
               else ($v[($v | length) / 2 - 1] + $v[($v | length) / 2]) / 2 end;
   def one(s; b): [.results[] | select(.step == s and .bench == b)] as $a |
                  if ($a | length) <= 1 then $a[0]
                  else med([$a[].records_per_s]) as $m | [$a[] | select(.records_per_s == $m)][0] // $a[0] end;
   def rps(s; b): med([.results[] | select(.step == s and .bench == b) | .records_per_s]);
   def best_redis: ([rps("redis"; "redis_xadd"), rps("redis_benchmark"; "redis_benchmark_xadd")] | max);
   def grp: if length <= 3 then . else (.[:length - 3] | grp) + "," + .[length - 3:] end;
   def n0: if . == null then "—" else (. | round | tostring | grp) end;
   def f1: if . == null then "—" else (. * 10 | round) / 10 | tostring end;
   def f2: if . == null then "—" else (. * 100 | round) / 100 | tostring end;
   def x(a; b): if (a == null or b == null or b == 0) then "—" else ((a / b) | f2) + "×" end;
   def verdict(ok): if ok then "met" else "**missed**" end;'
q() { jq -r "$Q $1" "$J"; }

# ---- Charts ------------------------------------------------------------------

dat() { # dat FILE FILTER: one line per jq output row
    q "$2" > "$TMP/$1"
}

dat headline.dat '
  ["embedded-append", rps("append_never"; "append"), rps("sqlite"; "sqlite_insert"), best_redis],
  ["gRPC-produce(fsync-never)", rps("produce_never"; "produce"), rps("sqlite"; "sqlite_insert"), best_redis],
  ["embedded-read", rps("read"; "read"), rps("sqlite"; "sqlite_read"), rps("redis"; "redis_xread")],
  ["gRPC-consume", rps("consume"; "consume"), rps("sqlite"; "sqlite_read"), rps("redis"; "redis_xread")]
  | map(tostring) | join(" ")'
dat size.dat '
  [.results[] | select(.step == "size_runnel")] as $r |
  [.results[] | select(.step == "size_sqlite" and .bench == "sqlite_insert")] as $s |
  [.results[] | select(.step == "size_redis" and .bench == "redis_xadd")] as $x |
  range(0; $r | length) as $i |
  [$r[$i].size, $r[$i].records_per_s, $r[$i].baseline_records_per_s,
   ($s[$i].records_per_s // "NaN"), ($x[$i].records_per_s // "NaN"),
   $r[$i].mb_per_s, $r[$i].baseline_mb_per_s] | map(tostring) | join(" ")'
dat batch.dat '.results[] | select(.step == "batch") |
  [.batch_bytes, .records_per_s, .baseline_records_per_s, .mb_per_s, .baseline_mb_per_s] | map(tostring) | join(" ")'
dat queues.dat '[.results[] | select(.step == "queues" and .bench == "queues_warm")] as $w |
  [.results[] | select(.step == "queues" and .bench == "queues")] | to_entries[] |
  [.value.queues, .value.records_per_s, ($w[.key].records_per_s // "NaN")] | map(tostring) | join(" ")'
dat producers.dat '.results[] | select(.step == "producers") |
  [.producers, .records_per_s, (.baseline_records_per_s // "NaN")] | map(tostring) | join(" ")'
dat recover.dat '.results[] | select(.step == "recover") | [.log_mib, .open_ms, .scanned_bytes / 1e6] | map(tostring) | join(" ")'

TITLE_NOTE=$(q '"\(.machine.date), \(.machine.cores) shared cores, load \(.machine.load_start)"')
gnuplot <<EOF
set terminal pngcairo size 900,520 font "sans,10"
set grid ytics
set key top right
set style data linespoints

set output "$CH/headline.png"
set title "runnel vs Redis streams vs SQLite-as-a-log — 100-byte records, records/s (log scale)\n{/*0.8 $TITLE_NOTE}"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set yrange [1e5:*]
set ylabel "records/s"
set xtics nomirror
plot "$TMP/headline.dat" using 2:xtic(1) title "runnel" lc rgb "#1f77b4", \
     "" using 3 title "SQLite WAL (1000-row txns / rowid ranges)" lc rgb "#2ca02c", \
     "" using 4 title "Redis streams (XADD pipelined / XREAD)" lc rgb "#d62728"

set style data linespoints
unset yrange
set output "$CH/size.png"
set title "Ingest vs record size (same records and count per size)"
set logscale xy
set xlabel "record value bytes"
set ylabel "records/s"
plot "$TMP/size.dat" using 1:2 title "runnel append (fsync never)" lw 2, \
     "" using 1:3 title "raw write() of the same batches", \
     "" using 1:4 title "SQLite WAL insert", \
     "" using 1:5 title "Redis XADD (pipelined)"

set output "$CH/batch.png"
set title "Embedded append vs batch size (100-byte records)"
set xlabel "batch bytes"
set ylabel "MB/s"
plot "$TMP/batch.dat" using 1:4 title "runnel append (fsync never)" lw 2, \
     "" using 1:5 title "raw write() of the same batches"

set output "$CH/queues.png"
set title "Embedded append vs number of queues (4 KiB batches, round-robin)"
set xlabel "queues"
set ylabel "records/s"
plot "$TMP/queues.dat" using 1:2 title "first pass: queues created on first append" lw 2, \\
     "" using 1:3 title "second pass: queues exist" lw 2

set output "$CH/producers.png"
set title "Produce vs number of producers (gRPC on loopback, 8 queues)"
set logscale x 2
unset logscale y
set xlabel "producers"
set ylabel "records/s"
set yrange [0:*]
plot "$TMP/producers.dat" using 1:2 title "over gRPC (runneld)" lw 2, \
     "" using 1:3 title "embedded producer (same code)"

set output "$CH/recovery.png"
set title "Restart after SIGKILL: rn_log_open time vs log size (fsync group)"
set logscale x 2
set xlabel "log MiB when killed"
set ylabel "ms"
plot "$TMP/recover.dat" using 1:2 title "open (recovery) ms" lw 2
EOF

# ---- The generated section ------------------------------------------------------

q '
"<!-- suite:begin -->",
"## Suite: runnel vs peers (generated by `make bench`; do not edit between these markers)",
"",
"Generated by `bench/report.sh` from `bench/results.json` (every figure measured in that one run of `bench/suite.sh`; ratios are runnel ÷ peer). Charts: `bench/charts/*.png`.",
"",
"| run | |",
"|---|---|",
"| date | \(.machine.date) (\(.machine.elapsed_s) s\(if .machine.quick == 1 then ", BENCH_QUICK=1" else "" end)) |",
"| code | commit \(.machine.commit) plus the working tree |",
"| CPU | \(.machine.cpu), \(.machine.cores) cores, shared with other engineers'"'"' builds and tests |",
"| load average (1, 5, 15 min) | \(.machine.load_start) at the start, \(.machine.load_end) at the end; each step'"'"'s 1-min load is in results.json (`load1`) |",
"| Redis | redis-server \(.machine.redis), 127.0.0.1, no persistence (`--save '"''"' --appendonly no`) |",
"",
"![runnel vs peers](charts/headline.png)",
"",
"### Against the peers (100-byte values, the same records and count)",
"",
"| figure | runnel | peer | runnel / peer | target | verdict |",
"|---|---|---|---|---|---|",
( rps("append_never"; "append") as $a | rps("append_group"; "append") as $g |
  rps("sqlite"; "sqlite_insert") as $si | rps("sqlite"; "sqlite_read") as $sr |
  rps("redis"; "redis_xadd") as $rx | rps("redis_benchmark"; "redis_benchmark_xadd") as $rb |
  best_redis as $r | rps("redis"; "redis_xread") as $rr |
  rps("produce"; "produce") as $p | rps("read"; "read") as $rd | rps("consume"; "consume") as $c |
  "| embedded append, fsync never (rec/s) | \($a | n0) | SQLite WAL insert, 1000-row txns: \($si | n0) | \(x($a; $si)) | ≥ 10× | \(verdict($a >= 10 * $si)) |",
  "| embedded append, fsync never | \($a | n0) | Redis XADD pipelined, best of ours (\($rx | n0)) and redis-benchmark -c 50 (\($rb | n0)): \($r | n0) | \(x($a; $r)) | ≥ 10× | \(verdict($a >= 10 * $r)) |",
  "| embedded append, group commit (durable) | \($g | n0) | SQLite insert \($si | n0) / Redis \($r | n0) (neither fsyncs per commit) | \(x($g; $si)) / \(x($g; $r)) | — | — |",
  rps("produce_never"; "produce") as $pn |
  "| produce over gRPC, 1 producer, runneld `--fsync never` (no persistence, as the Redis peer; median of 3 runs) | \($pn | n0) | Redis XADD over RESP: \($r | n0) | \(x($pn; $r)) | ≥ 3× | \(verdict($pn >= 3 * $r)) |",
  "| produce over gRPC, 1 producer, runneld default `--fsync group` (acks after fdatasync; median of 3 runs) | \($p | n0) | Redis XADD over RESP: \($r | n0) | \(x($p; $r)) | ≥ 3× | \(verdict($p >= 3 * $r)) |",
  "| embedded read (CRC + decode) | \($rd | n0) | SQLite rowid-range read: \($sr | n0) | \(x($rd; $sr)) | ≥ 1× | \(verdict($rd >= $sr)) |",
  "| embedded read | \($rd | n0) | Redis XREAD COUNT 1000: \($rr | n0) | \(x($rd; $rr)) | — | — |",
  "| consume over gRPC, 1 consumer (median of 3) | \($c | n0) | Redis XREAD: \($rr | n0) | \(x($c; $rr)) | — | — |",
  (one("sql"; "sql_window") as $w | one("sql"; "sqlite_window") as $sw |
  "| streamsql tumbling window, from the log | \($w.records_per_s | n0) | sqlite3 GROUP BY over an in-memory table: \($sw.records_per_s | n0) | \(x($w.records_per_s; $sw.records_per_s)) | — | — |")
),
"",
"### Against the raw baselines and DESIGN.md §9",
"",
"| figure | runnel | baseline (same run) | ratio | §9 target | verdict |",
"|---|---|---|---|---|---|",
( one("append_never"; "append") as $a | one("append_group"; "append") as $g | one("memcpy"; "memcpy") as $m |
  one("lookup"; "lookup_offset") as $lo | one("lookup"; "lookup_time") as $lt |
  one("produce"; "produce") as $p | one("consume"; "consume") as $c | one("e2e"; "e2e") as $e |
  one("sql"; "sql_filter") as $f | one("sql"; "sql_window") as $w | one("read"; "read") as $rd |
  "| append, fsync never (MB/s of batches) | \($a.mb_per_s | f1) | `write()`: \($a.baseline_mb_per_s | f1) | \($a.ratio | f2) | ≥ 0.70 | \(verdict($a.ratio >= 0.7)) |",
  "| append, group commit (MB/s) | \($g.mb_per_s | f1) | `write()` + `fdatasync()` by a flusher: \($g.baseline_mb_per_s | f1) | \($g.ratio | f2) | ≥ 0.70 | \(verdict($g.ratio >= 0.7)) |",
  "| embedded read (MB/s of values) | \($rd.mb_per_s | f1) | memcpy: \($m.mb_per_s | f1) | \(($rd.mb_per_s / $m.mb_per_s) | f2) | — | — |",
  (if $lo then "| offset lookup p99 (\($lo.batches | n0) batches) | \($lo.p99_us | f2) µs | — | — | ≤ 10 µs | \(verdict($lo.p99_us <= 10)) |" else empty end),
  (if $lt then "| exact timestamp lookup p99 | \($lt.p99_us | f2) µs | — | — | ≤ 10 µs | \(verdict($lt.p99_us <= 10)) |" else empty end),
  one("produce_never"; "produce") as $pn |
  "| produce over gRPC, fsync group (rec/s) | \($p.records_per_s | n0) | embedded producer, fsync group: \($p.baseline_records_per_s | n0) | \($p.ratio | f2) | ≥ 0.40 and ≥ 2,000,000/s | \(verdict($p.ratio >= 0.4 and $p.records_per_s >= 2e6)) |",
  "| produce over gRPC, runneld fsync never (rec/s) | \($pn.records_per_s | n0) | — | — | ≥ 2,000,000/s | \(verdict($pn.records_per_s >= 2e6)) |",
  "| consume over gRPC (rec/s) | \($c.records_per_s | n0) | — | — | ≥ 3,000,000/s | \(verdict($c.records_per_s >= 3e6)) |",
  "| e2e latency at \($e.rate | n0) rec/s | p50 \($e.p50_us / 1000 | f2) ms, p99 \($e.p99_us / 1000 | f2) ms | — | — | — | — |",
  "| streamsql filter + projection (rec/s) | \($f.records_per_s | n0) | — | — | ≥ 2,000,000/s | \(verdict($f.records_per_s >= 2e6)) |",
  "| streamsql tumbling window, 100 keys (rec/s) | \($w.records_per_s | n0) | — | — | ≥ 1,000,000/s | \(verdict($w.records_per_s >= 1e6)) |",
  ([.results[] | select(.step == "recover")] | last as $rv |
  "| restart after SIGKILL, largest log measured (\($rv.log_mib) MiB) | \($rv.open_ms | f1) ms | — | — | ≤ 1 s with 10 GB | \(verdict($rv.open_ms <= 1000)) at \($rv.log_mib) MiB; 10 GB not run (time and the shared disk) |")
),
"",
"### Throughput vs record size (fsync never; peers with the same records and count)",
"",
"| value bytes | records | runnel rec/s | runnel MB/s | raw write MB/s | runnel / raw | SQLite rec/s | runnel / SQLite | Redis rec/s | runnel / Redis |",
"|---|---|---|---|---|---|---|---|---|---|",
( [.results[] | select(.step == "size_runnel")] as $r |
  [.results[] | select(.step == "size_sqlite" and .bench == "sqlite_insert")] as $s |
  [.results[] | select(.step == "size_redis" and .bench == "redis_xadd")] as $x |
  range(0; $r | length) as $i |
  "| \($r[$i].size) | \($r[$i].records | n0) | \($r[$i].records_per_s | n0) | \($r[$i].mb_per_s | f1) | \($r[$i].baseline_mb_per_s | f1) | \($r[$i].ratio | f2) | \($s[$i].records_per_s | n0) | \(x($r[$i].records_per_s; $s[$i].records_per_s)) | \($x[$i].records_per_s | n0) | \(x($r[$i].records_per_s; $x[$i].records_per_s)) |"
),
"",
"### Throughput vs batch size (100-byte values, fsync never)",
"",
"| batch bytes | batches | runnel rec/s | runnel MB/s | raw write MB/s | runnel / raw |",
"|---|---|---|---|---|---|",
( .results[] | select(.step == "batch") |
  "| \(.batch_bytes | n0) | \(.batches | n0) | \(.records_per_s | n0) | \(.mb_per_s | f1) | \(.baseline_mb_per_s | f1) | \(.ratio | f2) |" ),
"",
"### Throughput vs number of queues (embedded, 4 KiB batches dealt round-robin, fsync never)",
"",
"| queues | records | rec/s, queues created on first append | vs 1 queue | rec/s, queues existing (same batches again) | vs 1 queue |",
"|---|---|---|---|---|---|",
( [.results[] | select(.step == "queues" and .bench == "queues")] as $qs |
  [.results[] | select(.step == "queues" and .bench == "queues_warm")] as $ws |
  range(0; $qs | length) as $i |
  "| \($qs[$i].queues | n0) | \($qs[$i].records | n0) | \($qs[$i].records_per_s | n0) | \(x($qs[$i].records_per_s; $qs[0].records_per_s)) | \($ws[$i].records_per_s | n0) | \(x($ws[$i].records_per_s; $ws[0].records_per_s)) |" ),
"",
"### Throughput vs number of producers (gRPC on loopback, 8 queues, each producer its own connection)",
"",
"| producers | over gRPC rec/s | embedded producer rec/s | gRPC / embedded | client CPU ms | runneld CPU ms |",
"|---|---|---|---|---|---|",
( .results[] | select(.step == "producers") |
  "| \(.producers) | \(.records_per_s | n0) | \(.baseline_records_per_s | n0) | \(.ratio | f2) | \(.client_cpu_ms | n0) | \(.broker_cpu_ms // 0 | n0) |" ),
"",
"### Recovery time vs log size (a writer SIGKILLed mid-append, fsync group; page cache warm)",
"",
"| log MiB | rn_log_open ms | clean marker | commit log scanned MB | index units rebuilt | records visible |",
"|---|---|---|---|---|---|",
( .results[] | select(.step == "recover") |
  "| \(.log_mib) | \(.open_ms | f1) | \(.clean) | \(.scanned_bytes / 1e6 | f1) | \(.rebuilt_units) | \(.records | n0) |" ),
"",
"<!-- suite:end -->"
' > "$TMP/section.md"

if grep -q '^<!-- suite:begin -->$' "$MD" && grep -q '^<!-- suite:end -->$' "$MD"; then
    awk -v sec="$TMP/section.md" '
        /^<!-- suite:begin -->$/ { while ((getline l < sec) > 0) print l; skip = 1; next }
        /^<!-- suite:end -->$/   { skip = 0; next }
        !skip { print }' "$MD" > "$TMP/RESULTS.md"
else
    { cat "$MD"; echo; cat "$TMP/section.md"; } > "$TMP/RESULTS.md"
fi
cp "$TMP/RESULTS.md" "$MD"
echo "report: $MD (generated section), charts in $CH: $(cd "$CH" && ls *.png | tr '\n' ' ')"
