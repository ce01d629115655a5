#!/usr/bin/python3
"""cluster_groups.py --kafka K1,K2,K3 --grpc G1,G2,G3 --pids P1,P2,P3
--runnel BIN --topic T --kill coordinator|controller — Kafka consumer
groups on a three-node runnel cluster, with stock clients, for
tests/test_kafka_cluster_groups.c:

  coordinator  FindCoordinator names the same node on every node for each
               of a few groups, and it is a live node; Heartbeat, JoinGroup
               and OffsetCommit sent to another node answer NOT_COORDINATOR
               (16) and commit nothing
  commit       a confluent-kafka group consumer (subscribe, bootstrap list of
               the three nodes) reads part of a replicated topic of three
               partitions and commits exact offsets (synchronous commit);
               OffsetFetch on every node then answers those offsets; it reads
               on (the uncommitted tail) and leaves
  kill         kill -9 of the group's coordinator (--kill coordinator), or
               of the controller leader when it is not the coordinator
               (--kill controller)
  resume       a new consumer of the group (bootstrap: the surviving nodes,
               auto.offset.reset latest, so lost offsets read nothing) reads
               every partition from exactly the committed offset to its end,
               every record once, in order; it commits the ends, and
               OffsetFetch on each surviving node answers them; FindCoordinator
               on both surviving nodes names the same live node; kafka-python's
               committed() through each surviving node answers the ends

Prints one "ok:" line per check and the figures; exits 0 when all pass, 1
at the first failure.
"""
import argparse
import os
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import call, status, wait_made, wait_metadata  # noqa: E402
from common import fail, ok  # noqa: E402

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from kafka import TopicPartition as KTP  # noqa: E402

NPARTS = 3
RECORDS = 3000       # produced, spread over the partitions
FIRST = 1200         # read and committed by the first consumer
TAIL = 300           # read after the commit, never committed
NOT_COORDINATOR = 16
COORDINATOR_NOT_AVAILABLE = 15


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def find_coordinator(addr, group):
    """FindCoordinator v1: (error, node id, "host:port")."""
    r = call(addr, 10, 1, kstr(group) + b"\x00")
    err, = struct.unpack(">h", r[4:6])
    p = 6
    ml, = struct.unpack(">h", r[p:p + 2])
    p += 2 + max(ml, 0)
    node, = struct.unpack(">i", r[p:p + 4])
    p += 4
    hl, = struct.unpack(">h", r[p:p + 2])
    host = r[p + 2:p + 2 + hl].decode()
    port, = struct.unpack(">i", r[p + 2 + hl:p + 6 + hl])
    return err, node, "%s:%d" % (host, port)


def offset_fetch(addr, group, topic):
    """OffsetFetch v1 of the topic's partitions: {partition: offset}."""
    body = kstr(group) + struct.pack(">i", 1) + kstr(topic) + struct.pack(">i", NPARTS)
    body += b"".join(struct.pack(">i", p) for p in range(NPARTS))
    r = call(addr, 9, 1, body)
    p = 4                                   # one topic
    tl, = struct.unpack(">h", r[p:p + 2])
    p += 2 + tl
    n, = struct.unpack(">i", r[p:p + 4])
    p += 4
    out = {}
    for _ in range(n):
        part, off = struct.unpack(">iq", r[p:p + 12])
        p += 12
        ml, = struct.unpack(">h", r[p:p + 2])
        p += 2 + max(ml, 0)
        err, = struct.unpack(">h", r[p:p + 2])
        p += 2
        if err:
            fail("%s: OffsetFetch of %s partition %d: error %d" % (addr, group, part, err))
        out[part] = off
    return out


def offsets_agree(a, live, group, want, what):
    """Every live node's OffsetFetch answers want (bounded: a node applies
    the controller's entry about one raft round trip after the one asked)."""
    t0 = time.time()
    for n in live:
        while True:
            got = offset_fetch(a.kafka[n - 1], group, a.topic)
            if got == want:
                break
            if time.time() - t0 > 5:
                fail("%s: node %d's OffsetFetch answers %s, wanted %s" % (what, n, got, want))
            time.sleep(0.02)
    ok("%s: OffsetFetch on nodes %s answers %s" % (what, live, want))


def coordinator_checks(a, live, groups):
    """Each group's coordinator as every live node names it (the same)."""
    out = {}
    for g in groups:
        seen = set()
        for n in live:
            err, node, addr = find_coordinator(a.kafka[n - 1], g)
            if err:
                fail("node %d: FindCoordinator %s: error %d" % (n, g, err))
            seen.add((node, addr))
        if len(seen) != 1:
            fail("group %s: the nodes name different coordinators: %s" % (g, sorted(seen)))
        node, addr = seen.pop()
        if node not in live or addr != a.kafka[node - 1]:
            fail("group %s: coordinator %d at %s is not a live node's Kafka address" %
                 (g, node, addr))
        out[g] = node
    return out


def not_coordinator_checks(a, group, coord):
    """Heartbeat, JoinGroup and OffsetCommit to a node that does not
    coordinate group: NOT_COORDINATOR, nothing committed."""
    other = [n for n in (1, 2, 3) if n != coord][0]
    addr = a.kafka[other - 1]
    r = call(addr, 12, 0, kstr(group) + struct.pack(">i", 1) + kstr("m-1"))
    if struct.unpack(">h", r[:2])[0] != NOT_COORDINATOR:
        fail("Heartbeat to node %d (coordinator %d): error %d, wanted 16" %
             (other, coord, struct.unpack(">h", r[:2])[0]))
    # JoinGroup v1: group, session, rebalance, member "", type, [protocol]
    body = (kstr(group) + struct.pack(">ii", 6000, 6000) + kstr("") + kstr("consumer") +
            struct.pack(">i", 1) + kstr("range") + struct.pack(">i", 0))
    r = call(addr, 11, 1, body)
    if struct.unpack(">h", r[:2])[0] != NOT_COORDINATOR:
        fail("JoinGroup to node %d: error %d, wanted 16" % (other, struct.unpack(">h", r[:2])[0]))
    # OffsetCommit v2, generation -1: [topic [partition, offset, metadata]]
    body = (kstr(group) + struct.pack(">i", -1) + kstr("") + struct.pack(">q", -1) +
            struct.pack(">i", 1) + kstr(a.topic) + struct.pack(">i", 1) +
            struct.pack(">iq", 0, 1) + kstr(""))
    r = call(addr, 8, 2, body)
    p = 4 + 2 + len(a.topic) + 4 + 4
    if struct.unpack(">h", r[p:p + 2])[0] != NOT_COORDINATOR:
        fail("OffsetCommit to node %d: error %d, wanted 16" % (other, struct.unpack(">h", r[p:p + 2])[0]))
    for n in (1, 2, 3):
        if offset_fetch(a.kafka[n - 1], group, a.topic) != {p: -1 for p in range(NPARTS)}:
            fail("node %d shows offsets of %s after refused commits" % (n, group))
    ok("node %d (not group %s's coordinator %d) answers Heartbeat, JoinGroup and OffsetCommit "
       "with NOT_COORDINATOR; no offset committed" % (other, group, coord))


def produce(a):
    """RECORDS records, partition i % NPARTS, value b"r-<p>-<offset>"
    checked at delivery, in batches of at most 40: {partition: count}."""
    errs, acked = [], {p: 0 for p in range(NPARTS)}

    def report(err, msg):
        if err is not None:
            errs.append(str(err))
        elif msg.offset() != acked[msg.partition()]:
            errs.append("partition %d: offset %d, wanted %d" %
                        (msg.partition(), msg.offset(), acked[msg.partition()]))
        else:
            acked[msg.partition()] += 1

    p = Producer({"bootstrap.servers": ",".join(a.kafka), "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5, "batch.num.messages": 40})
    cnt = {q: 0 for q in range(NPARTS)}
    for i in range(RECORDS):
        q = i % NPARTS
        p.produce(a.topic, value=b"r-%d-%d" % (q, cnt[q]), partition=q, on_delivery=report)
        cnt[q] += 1
        if i % 100 == 0:
            p.poll(0)
    if p.flush(30) or errs or acked != cnt:
        fail("produce: %s; acknowledged %s of %s" % (errs[:3], acked, cnt))
    return cnt


def consumer(bootstrap, group, reset):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": reset,
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                     # one small batch per partition and fetch: the partitions
                     # are read interleaved, so each is committed mid-way
                     "max.partition.fetch.bytes": 256, "fetch.max.bytes": 1024,
                     "message.max.bytes": 1000,
                     "queued.max.messages.kbytes": 1,
                     "topic.metadata.refresh.interval.ms": 1000, "retry.backoff.ms": 100})


def take(c, got, want, deadline, what, first=None):
    """Poll c until want records were read in all (got: {p: [offsets]},
    each value checked); first (a list), when given, gets the time of the
    first record read."""
    while sum(len(v) for v in got.values()) < want:
        if time.time() > deadline:
            fail("%s: read %d of %d records in time (%s)" %
                 (what, sum(len(v) for v in got.values()), want,
                  {p: (v[0], v[-1]) if v else None for p, v in got.items()}))
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            print("note: %s: %s" % (what, m.error()), flush=True)
            continue
        p, o = m.partition(), m.offset()
        if m.value() != b"r-%d-%d" % (p, o):
            fail("%s: partition %d offset %d holds %r" % (what, p, o, m.value()))
        got[p].append(o)
        if first is not None and not first:
            first.append(time.time())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--runnel", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--kill", required=True, choices=["coordinator", "controller"])
    a = ap.parse_args()
    a.kafka = a.kafka.split(",")
    a.grpc = a.grpc.split(",")
    a.pids = [int(x) for x in a.pids.split(",")]
    out = __import__("subprocess").run(
        [a.runnel, "--server", ",".join(a.grpc), "topic", "create", a.topic, "--queues",
         str(NPARTS), "--replicas", "3"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        fail("topic create: %s" % out.stderr)
    # every node has applied the topic before Metadata names it (a node
    # asked before it applied it would auto-create a local topic)
    t0 = time.time()
    for g in a.grpc:
        while a.topic not in (status(a.runnel, g) or (0, 0, {}))[2]:
            if time.time() - t0 > 20:
                fail("node at %s does not show topic %s" % (g, a.topic))
            time.sleep(0.05)
    wait_made(a, wait_metadata(a, a.topic, [1, 2, 3], "topic created"))
    ends = produce(a)
    ok("produced %s records (partition: count), acks all" % ends)

    st = status(a.runnel, ",".join(a.grpc))
    ctl_leader = st[0]["leader"]
    live = [1, 2, 3]
    groups = ["kg-%d" % i for i in range(12)]
    coords = coordinator_checks(a, live, groups)
    used = sorted(set(coords.values()))
    ok("FindCoordinator: every node names the same coordinator for each of %d groups "
       "(nodes used: %s; controller leader %d)" % (len(groups), used, ctl_leader))
    if len(used) < 2:
        fail("12 groups all coordinated by one node: %s" % coords)
    group = [g for g in groups if coords[g] != ctl_leader][0]
    coord = coords[group]
    g2 = [g for g in groups if g != group][0]
    not_coordinator_checks(a, g2, coords[g2])

    # the first consumer: read FIRST, commit exactly, read TAIL more, leave
    c = consumer(",".join(a.kafka), group, "earliest")
    c.subscribe([a.topic])
    got = {p: [] for p in range(NPARTS)}
    take(c, got, FIRST, time.time() + 20, "first consumer")
    committed = {p: (v[-1] + 1 if v else 0) for p, v in got.items()}
    for p, v in got.items():
        if v != list(range(len(v))):
            fail("first consumer: partition %d read out of order or with gaps" % p)
    t0 = time.time()
    res = c.commit(offsets=[TopicPartition(a.topic, p, o) for p, o in committed.items()],
                   asynchronous=False)
    ms = (time.time() - t0) * 1000
    if any(tp.error for tp in res):
        fail("commit: %s" % [str(tp.error) for tp in res if tp.error])
    ok("first consumer (group %s, coordinator node %d) read %d and committed %s in %.0f ms" %
       (group, coord, FIRST, committed, ms))
    offsets_agree(a, live, group, committed, "after the commit")
    take(c, got, FIRST + TAIL, time.time() + 20, "first consumer (tail)")
    tail = {p: len(v) - (committed[p]) for p, v in got.items()}
    c.close()                                # no commit: enable.auto.commit is off
    if offset_fetch(a.kafka[coord - 1], group, a.topic) != committed:
        fail("the uncommitted tail moved the committed offsets")
    ok("first consumer read %s more records (uncommitted) and left" % tail)

    victim = coord if a.kill == "coordinator" else ctl_leader
    os.kill(a.pids[victim - 1], signal.SIGKILL)
    killed = time.time()
    live = [n for n in live if n != victim]
    ok("node %d (%s) killed with kill -9" %
       (victim, "the group's coordinator" + (", also the controller leader"
                                             if victim == ctl_leader else "")
        if victim == coord else "the controller leader, not the coordinator"))

    c2 = consumer(",".join(a.kafka[n - 1] for n in live), group, "latest")
    c2.subscribe([a.topic])
    got2 = {p: [] for p in range(NPARTS)}
    want = sum(ends[p] - committed[p] for p in range(NPARTS))
    first = []
    take(c2, got2, want, time.time() + 30, "second consumer", first)
    resumed = time.time() - killed
    for p in range(NPARTS):
        if got2[p] != list(range(committed[p], ends[p])):
            fail("second consumer: partition %d read %d records from %s, wanted [%d, %d) once" %
                 (p, len(got2[p]), got2[p][:1], committed[p], ends[p]))
    m = c2.poll(1.0)
    if m is not None and not m.error():
        fail("second consumer read a record past the ends: partition %d offset %d" %
             (m.partition(), m.offset()))
    ok("second consumer (bootstrap: nodes %s) read every partition from exactly the committed "
       "offset to its end, each record once: %d records; kill -9 to the first of them: "
       "%.2f s, to the last: %.2f s" % (live, want, first[0] - killed, resumed))
    res = c2.commit(offsets=[TopicPartition(a.topic, p, ends[p]) for p in range(NPARTS)],
                    asynchronous=False)
    if any(tp.error for tp in res):
        fail("second commit: %s" % [str(tp.error) for tp in res if tp.error])
    offsets_agree(a, live, group, ends, "after the second commit")
    c2.close()
    for n in live:                           # another client: kafka-python
        kp = KafkaConsumer(bootstrap_servers=a.kafka[n - 1], group_id=group,
                           enable_auto_commit=False, request_timeout_ms=15000)
        got = {p: kp.committed(KTP(a.topic, p)) for p in range(NPARTS)}
        kp.close()
        if got != ends:
            fail("kafka-python (bootstrap node %d): committed offsets %s, wanted %s" %
                 (n, got, ends))
    ok("kafka-python (bootstrap: each surviving node) reads the committed offsets %s" % ends)
    coords = coordinator_checks(a, live, [group])
    ok("after the kill, both surviving nodes name node %d as %s's coordinator" %
       (coords[group], group))
    if a.kill == "coordinator" and coords[group] == victim:
        fail("the dead node is still named coordinator")


if __name__ == "__main__":
    main()
