#!/usr/bin/python3
"""cluster.py --kafka K1,K2,K3 --grpc G1,G2,G3 --pids P1,P2,P3 --runnel BIN
--topic T — stock Kafka clients against a three-node runnel cluster
(runneld --node-id N --cluster ... --kafka-listen), for
tests/test_kafka_cluster.c:

  metadata   every node's Metadata (a raw v1 request, and librdkafka's
             list_topics) names the nodes' Kafka addresses as brokers, the
             controller leader as controller, and for each partition the
             leader, replicas and ISR `runnel cluster status --format json`
             shows
  admin      AdminClient.create_topics makes a replicated topic through the
             controller; replication factor 5 on three nodes is refused
  follower   a Produce (acks -1 and 1) and a Fetch sent to a node that does
             not lead the partition get NOT_LEADER_OR_FOLLOWER (6), and
             nothing is stored (the leader's high watermark stays)
  hwm        both followers of a partition stopped: acks 1 is answered but a
             Fetch does not see it; acks -1 waits until they run again; a
             Metadata pipelined behind it answers as of when it leaves
  failover   a confluent-kafka idempotent producer (acks all, bootstrap list
             of the three nodes) sends to every partition while the leader
             of partition 0 is killed with kill -9; every acknowledged
             record is then read back through the surviving nodes exactly
             once, at its acknowledged offset, in the order sent, by
             confluent-kafka and by kcat; Metadata names the new leader

Prints one "ok:" line per check and the failover figures; exits 0 when all
pass, 1 at the first failure.
"""
import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fail, ok, raw_fetch  # noqa: E402

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer  # noqa: E402
from confluent_kafka import TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

WAIT_S = 20
LATE = b"kc-late"   # a local topic made while a Metadata waits for its turn
ADMIN = "kc-admin"  # made by AdminClient.create_topics
STALL_S = 0.5       # how long acks -1 must stay unanswered with the followers stopped


def status(runnel, grpc):
    """`runnel cluster status --format json` asked of the live nodes:
    (controller line, {node: line}, {queue: line} of the topic)."""
    out = subprocess.run([runnel, "--server", grpc, "cluster", "status", "--format", "json"],
                         capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return None
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.strip()]
    ctl = [x for x in lines if x["kind"] == "controller"][0]
    nodes = {x["node"]: x for x in lines if x["kind"] == "node"}
    queues = {}
    for x in lines:
        if x["kind"] == "queue":
            queues.setdefault(x["topic"], {})[x["queue"]] = x
    return ctl, nodes, queues


def call(addr, api, ver, body, corr=1, before=None):
    """One request on a fresh connection and its answer (after the
    correlation id); before(socket), when given, runs once it is sent."""
    return pipeline(addr, [(api, ver, body)], before)[0]


def pipeline(addr, reqs, before=None):
    """Requests [(api, version, body)] sent at once on a fresh connection,
    and their answers in order (after the correlation ids, checked);
    before(socket), when given, runs once they are sent."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    cid = b"cluster-test"
    for corr, (api, ver, body) in enumerate(reqs, 1):
        head = struct.pack(">hhih", api, ver, corr, len(cid)) + cid
        s.sendall(struct.pack(">i", len(head) + len(body)) + head + body)
    if before:
        before(s)

    def readn(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                fail("%s: connection closed" % addr)
            b += c
        return b

    out = []
    for corr in range(1, len(reqs) + 1):
        size = struct.unpack(">i", readn(4))[0]
        r = readn(size)
        if struct.unpack(">i", r[:4])[0] != corr:
            fail("%s: answer %d has correlation id %d" % (addr, corr, struct.unpack(">i", r[:4])[0]))
        out.append(r[4:])
    s.close()
    return out


def raw_metadata(addr, topic):
    """Metadata v1 of one topic: ({id: "host:port"}, controller,
    {partition: (error, leader, replicas, isr)}, topic error)."""
    t = topic.encode()
    return parse_metadata(call(addr, 3, 1, struct.pack(">ih", 1, len(t)) + t))[:4]


def parse_metadata(r):
    """A Metadata v1 answer: brokers, controller, partitions and error of
    its (last) topic, and the names of every topic in it."""
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, r, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string():
        nonlocal pos
        n = take(">h")
        if n < 0:
            return None
        v = r[pos:pos + n].decode()
        pos += n
        return v

    brokers = {}
    for _ in range(take(">i")):
        nid = take(">i")
        host = string()
        port = take(">i")
        string()                                   # rack
        brokers[nid] = "%s:%d" % (host, port)
    controller = take(">i")
    parts, terr, names = {}, None, []
    for _ in range(take(">i")):
        terr = take(">h")
        names.append(string())
        take(">b")
        for _ in range(take(">i")):
            perr, p, leader = take(">hii")
            reps = [take(">i") for _ in range(take(">i"))]
            isr = [take(">i") for _ in range(take(">i"))]
            parts[p] = (perr, leader, reps, isr)
    return brokers, controller, parts, terr, names


def metadata_matches(addr, topic, st, live):
    """None when addr's Metadata agrees with the status st, else why not."""
    ctl, nodes, queues = st
    brokers, controller, parts, terr = raw_metadata(addr, topic)
    want = {n: x["kafka"] for n, x in nodes.items() if n in live and x["live"] and x["kafka"]}
    if brokers != want:
        return "brokers %r, status says %r" % (brokers, want)
    if controller != (ctl["leader"] if ctl["leader"] is not None else -1):
        return "controller %d, status says %r" % (controller, ctl["leader"])
    if terr != 0:
        return "topic error %r" % terr
    qs = queues.get(topic, {})
    if sorted(parts) != sorted(qs):
        return "partitions %r, status queues %r" % (sorted(parts), sorted(qs))
    for p, (perr, leader, reps, isr) in parts.items():
        q = qs[p]
        if (perr, leader, reps, isr) != (0, q["leader"], q["replicas"], q["isr"]):
            return "partition %d: error %d leader %d replicas %r isr %r; status: leader %r " \
                   "replicas %r isr %r" % (p, perr, leader, reps, isr, q["leader"],
                                           q["replicas"], q["isr"])
    return None


def wait_metadata(a, topic, live, what):
    """Every live node's Metadata matches the status (retried while the
    cluster settles)."""
    t0 = time.time()
    while True:
        why = None
        st = status(a.runnel, ",".join(a.grpc[i - 1] for i in live))
        if st is None:
            why = "no status"
        else:
            for n in live:
                why = metadata_matches(a.kafka[n - 1], topic, st, live)
                if why:
                    why = "node %d: %s" % (n, why)
                    break
        if not why:
            ok("%s: Metadata of nodes %s matches cluster status (leaders %s)" %
               (what, live, [st[2][topic][p]["leader"] for p in sorted(st[2][topic])]))
            return st
        if time.time() - t0 > WAIT_S:
            fail("%s: %s" % (what, why))
        time.sleep(0.1)


def librdkafka_metadata(a, st, live):
    """librdkafka's list_topics agrees too (what producers route by)."""
    ac = AdminClient({"bootstrap.servers": ",".join(a.kafka[i - 1] for i in live)})
    md = ac.list_topics(a.topic, timeout=10)
    got = {n: "%s:%d" % (b.host, b.port) for n, b in md.brokers.items()}
    want = {n: st[1][n]["kafka"] for n in live}
    if got != want:
        fail("list_topics brokers %r, wanted %r" % (got, want))
    tm = md.topics[a.topic]
    for p, pm in tm.partitions.items():
        q = st[2][a.topic][p]
        if pm.leader != q["leader"] or list(pm.replicas) != q["replicas"] or \
           list(pm.isrs) != q["isr"]:
            fail("list_topics partition %d: leader %d replicas %r isrs %r; status %r" %
                 (p, pm.leader, pm.replicas, pm.isrs, q))
    ok("librdkafka list_topics: %d brokers, %d partitions with the status's leaders" %
       (len(got), len(tm.partitions)))


def record_batch(values):
    """A RecordBatch v2 of these values (kafka-python's builder)."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=int(time.time() * 1000), key=None, value=v, headers=[])
    return bytes(b.build())


def produce_req(topic, partition, acks, values):
    """A Produce v3 of one batch: (api, version, body)."""
    t = topic.encode()
    rec = record_batch(values)
    body = struct.pack(">hhi", -1, acks, 5000) + struct.pack(">ih", 1, len(t)) + t
    body += struct.pack(">ii", 1, partition) + struct.pack(">i", len(rec)) + rec
    return (0, 3, body)


def raw_produce(addr, topic, partition, acks, values):
    """Produce v3 of one batch: (error, base offset)."""
    return produce_resp(call(addr, *produce_req(topic, partition, acks, values)), partition)


def produce_resp(r, partition):
    """(error, base offset) of a Produce v3 answer of one partition."""
    pos = 4
    (tl,) = struct.unpack_from(">h", r, pos)
    pos += 2 + tl + 4
    p, err, base = struct.unpack_from(">ihq", r, pos)
    if p != partition:
        fail("produce answer for partition %d, sent %d" % (p, partition))
    return err, base


def hwm(addr, topic, p):
    (res,) = raw_fetch(addr, topic, p, 0)
    return res[2], res[3]


def admin_checks(a, live):
    """CreateTopics through librdkafka's AdminClient on a cluster makes a
    replicated topic (the controller places the replicas); a replication
    factor beyond the cluster's nodes is INVALID_REPLICATION_FACTOR."""
    ac = AdminClient({"bootstrap.servers": a.kafka[2]})
    fs = ac.create_topics([NewTopic(ADMIN, 2, 3), NewTopic(ADMIN + "-rf5", 1, 5)],
                          request_timeout=20)
    try:
        fs[ADMIN].result(30)
    except KafkaException as e:
        fail("create_topics %s: %s" % (ADMIN, e))
    try:
        fs[ADMIN + "-rf5"].result(30)
        fail("create_topics with replication factor 5 on three nodes succeeded")
    except KafkaException as e:
        if e.args[0].code() != KafkaError.INVALID_REPLICATION_FACTOR:
            fail("create_topics with replication factor 5: %s, wanted "
                 "INVALID_REPLICATION_FACTOR" % e)
    st = wait_metadata(a, ADMIN, live, "create_topics")
    qs = st[2][ADMIN]
    if sorted(qs) != [0, 1] or any(len(q["replicas"]) != 3 for q in qs.values()):
        fail("topic %s made by create_topics: status %r, wanted 2 queues of 3 replicas" %
             (ADMIN, qs))
    ok("admin: create_topics made %s replicated (2 partitions x 3 replicas on every node); "
       "replication factor 5 refused with INVALID_REPLICATION_FACTOR" % ADMIN)


def wait_made(a, st):
    """Every node made the topic in its store (a Fetch answers 0 on the
    leader, 6 elsewhere; LEADER_NOT_AVAILABLE or NOT_LEADER_OR_FOLLOWER
    while a node has not made it yet)."""
    t0 = time.time()
    for p, q in st[2][a.topic].items():
        for n in q["replicas"]:
            want = 0 if n == q["leader"] else 6
            while True:
                (res,) = raw_fetch(a.kafka[n - 1], a.topic, p, 0)
                if res[2] == want:
                    break
                if res[2] not in (5, 6) or time.time() - t0 > WAIT_S:
                    fail("fetch of partition %d from node %d: error %d, wanted %d" %
                         (p, n, res[2], want))
                time.sleep(0.05)


def follower_checks(a, st):
    qs = st[2][a.topic]
    for p in sorted(qs):
        leader = qs[p]["leader"]
        follower = [n for n in qs[p]["replicas"] if n != leader][0]
        before = hwm(a.kafka[leader - 1], a.topic, p)
        for acks in (-1, 1):
            err, base = raw_produce(a.kafka[follower - 1], a.topic, p, acks, [b"x", b"y"])
            if err != 6:
                fail("produce (acks %d) of partition %d to follower %d: error %d base %d, "
                     "wanted NOT_LEADER_OR_FOLLOWER (6)" % (acks, p, follower, err, base))
        (res,) = raw_fetch(a.kafka[follower - 1], a.topic, p, 0)
        if res[2] != 6:
            fail("fetch of partition %d from follower %d: error %d, wanted 6" %
                 (p, follower, res[2]))
        after = hwm(a.kafka[leader - 1], a.topic, p)
        if after != before:
            fail("partition %d: leader's (error, high watermark) went %r -> %r after refused "
                 "produces" % (p, before, after))
    # the leader takes it, and the high watermark moves by the two records
    p = 0
    leader = qs[p]["leader"]
    err, base = raw_produce(a.kafka[leader - 1], a.topic, p, -1, [b"first-0", b"first-1"])
    if err != 0 or base != 0:
        fail("produce to leader %d of partition 0: error %d base %d" % (leader, err, base))
    if hwm(a.kafka[leader - 1], a.topic, p) != (0, 2):
        fail("after an acks -1 produce of 2 records the leader's high watermark is %r" %
             (hwm(a.kafka[leader - 1], a.topic, p),))
    ok("follower: Produce (acks -1 and 1) and Fetch to a follower of each of %d partitions "
       "answer NOT_LEADER_OR_FOLLOWER, nothing stored; the leader takes acks -1" % len(qs))
    return 2                        # records already in partition 0


def hwm_checks(a, st):
    """Partition 1 with both followers stopped (SIGSTOP, under 1 s: shorter
    than the controller's 1 s election timeout and 1.5 s session, so
    nothing fails over): acks 1 is answered
    after the leader's write but a Fetch does not see the records (the high
    watermark stays); acks -1 is not answered until the followers run
    again (SIGCONT), then it is, and the records become visible."""
    q = st[2][a.topic][1]
    leader = a.kafka[q["leader"] - 1]
    fols = [n for n in q["replicas"] if n != q["leader"]]
    before = hwm(leader, a.topic, 1)
    for n in fols:
        os.kill(a.pids[n - 1], signal.SIGSTOP)
    try:
        err, base = raw_produce(leader, a.topic, 1, 1, [b"w-0", b"w-1", b"w-2"])
        if err != 0:
            fail("acks 1 with the followers stopped: error %d" % err)
        time.sleep(0.1)
        if hwm(leader, a.topic, 1) != before:
            fail("partition 1: the high watermark moved to %r with every follower stopped" %
                 (hwm(leader, a.topic, 1),))
        waited = {}

        def stalled(sock):
            sock.settimeout(STALL_S)
            try:
                sock.recv(1, socket.MSG_PEEK)
                waited["early"] = True
            except socket.timeout:
                waited["early"] = False
            # a topic made now, on another connection (auto-created, local)
            late = parse_metadata(call(leader, 3, 1, struct.pack(">ih", 1, len(LATE)) + LATE))
            waited["late"] = late[3]
            for n in fols:
                os.kill(a.pids[n - 1], signal.SIGCONT)
            sock.settimeout(15)

        # the acks -1 produce, and behind it on the same connection a
        # Metadata of every topic
        answers = pipeline(leader, [produce_req(a.topic, 1, -1, [b"d-0"]),
                                    (3, 1, struct.pack(">i", -1))], before=stalled)
        err, base2 = produce_resp(answers[0], 1)
        names = parse_metadata(answers[1])[4]
    finally:
        for n in fols:
            os.kill(a.pids[n - 1], signal.SIGCONT)
    if waited.get("early"):
        fail("acks -1 was answered within %.1f s while every follower was stopped" % STALL_S)
    if waited.get("late") != 0:
        fail("Metadata auto-creating %r: topic error %r" % (LATE, waited.get("late")))
    if LATE.decode() not in names:
        fail("a Metadata sent behind the waiting produce was answered as of when it arrived: "
             "it lacks %r, made before its answer left (topics %r)" % (LATE, names))
    if err != 0 or base2 != base + 3:
        fail("acks -1 after SIGCONT: error %d base %d (wanted 0, %d)" % (err, base2, base + 3))
    if hwm(leader, a.topic, 1) != (0, before[1] + 4):
        fail("partition 1: high watermark %r after the acks -1 answer, wanted %d" %
             (hwm(leader, a.topic, 1), before[1] + 4))
    ok("hwm: with the followers stopped, acks 1 is answered and a Fetch sees none of it; "
       "acks -1 waits (over %.1f s) until they run again, then the high watermark covers both; "
       "a Metadata behind it on its connection answers as of when it leaves" % STALL_S)
    return 4                        # records in partition 1


def failover(a, st, pre):
    qs = st[2][a.topic]
    ctl_leader = st[0]["leader"]
    victim = qs[0]["leader"]
    nparts = len(qs)
    acked, errors, sent_t, after = [], [], {}, []

    def report(err, msg):
        if err is not None:
            errors.append("partition %d %s: %s" % (msg.partition(), msg.value(), err))
            return
        acked.append((msg.partition(), msg.offset(), msg.value()))
        # the failover time: a record of partition 0 sent after the kill
        if killed_t is not None and msg.partition() == 0 and sent_t[msg.value()] > killed_t:
            after.append(time.time())

    p = Producer({"bootstrap.servers": ",".join(a.kafka), "enable.idempotence": True,
                  "acks": "all", "linger.ms": 5, "message.timeout.ms": 30000,
                  "retry.backoff.ms": 50, "topic.metadata.refresh.interval.ms": 1000,
                  **({"debug": os.environ["RN_KAFKA_DEBUG"]} if os.environ.get("RN_KAFKA_DEBUG")
                     else {})})
    total, kill_at = a.records, a.records // 3
    killed_t = None
    sent = 0
    t0 = time.time()
    while sent < total:
        v = b"v-%06d" % sent
        try:
            sent_t[v] = time.time()
            p.produce(a.topic, value=v, partition=sent % nparts, on_delivery=report)
            sent += 1
        except BufferError:
            p.poll(0.05)
            continue
        if sent % 20 == 0:          # about 1000 records a second: the kill falls mid-stream
            p.poll(0.02)
        if killed_t is None and len(acked) >= kill_at:
            os.kill(a.pids[victim - 1], signal.SIGKILL)
            killed_t = time.time()
            n_at_kill = len(acked)
            ok("failover: node %d (leader of partition 0%s) killed with kill -9 after %d "
               "acknowledged records" % (victim, ", and the controller leader"
                                         if victim == ctl_leader else "", n_at_kill))
        if time.time() - t0 > 45:
            fail("producing %d records took more than 45 s (%d sent, %d acknowledged)" %
                 (total, sent, len(acked)))
    left = p.flush(40)
    if killed_t is None:
        fail("the kill never happened (%d acknowledged)" % len(acked))
    if left:
        fail("%d records still unacknowledged after flush" % left)
    if errors:
        fail("%d records failed: %s" % (len(errors), errors[:3]))
    if not after:
        fail("no record of partition 0 sent after the kill was acknowledged")
    ok("failover: %d records acknowledged, 0 failed; kill -9 to the first acknowledged record "
       "of partition 0 sent after it: %.2f s" % (len(acked), min(after) - killed_t))
    return victim, acked


def read_back(a, live, nparts, ends):
    c = Consumer({"bootstrap.servers": ",".join(a.kafka[i - 1] for i in live),
                  "group.id": "cluster-test", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.assign([TopicPartition(a.topic, p, 0) for p in range(nparts)])
    got = {p: [] for p in range(nparts)}
    eof = set()
    t0 = time.time()
    while len(eof) < nparts:
        m = c.poll(0.5)
        if time.time() - t0 > WAIT_S:
            fail("read back: partitions at EOF %r of %d after %d s (%r records)" %
                 (sorted(eof), nparts, WAIT_S, {p: len(v) for p, v in got.items()}))
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:      # _PARTITION_EOF
                if len(got[m.partition()]) >= ends[m.partition()]:
                    eof.add(m.partition())
                continue
            fail("read back: %s" % m.error())
        got[m.partition()].append((m.offset(), m.value()))
    c.close()
    return got


def check_read(a, acked, got, pre):
    by_off = {}
    for p, recs in got.items():
        offs = [o for o, _ in recs]
        if offs != list(range(len(recs))):
            fail("partition %d: offsets read %r... are not 0, 1, 2, ..." % (p, offs[:10]))
        for o, v in recs:
            by_off[(p, o)] = v
    values = [v for recs in got.values() for _, v in recs]
    for p, o, v in acked:
        if by_off.get((p, o)) != v:
            fail("acknowledged %r at partition %d offset %d; read %r there" %
                 (v, p, o, by_off.get((p, o))))
        if values.count(v) != 1:
            fail("acknowledged %r read %d times" % (v, values.count(v)))
    for p, recs in got.items():
        seq = [int(v[2:]) for _, v in recs if v.startswith(b"v-")]
        if seq != sorted(seq) or len(seq) != len(set(seq)):
            fail("partition %d: values out of order or repeated: %r" % (p, seq[:20]))
    extra = len(values) - pre - len(acked)
    ok("read back (confluent-kafka, surviving nodes): all %d acknowledged records exactly "
       "once at their offsets, in the order sent (%d records in all; %d not acknowledged "
       "but stored)" % (len(acked), len(values), extra))


def kcat_count(a, live, nparts):
    out = subprocess.run(["kcat", "-b", ",".join(a.kafka[i - 1] for i in live), "-C", "-t",
                          a.topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %s\n"],
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        fail("kcat exited %d: %s" % (out.returncode, out.stderr.decode()[-500:]))
    return sorted(tuple(x.split(b" ", 2)) for x in out.stdout.splitlines() if x)


def kafka_python_read(a, live, ends):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=[a.kafka[i - 1] for i in live], group_id=None,
                      enable_auto_commit=False, api_version=(2, 0))
    tps = [KTP(a.topic, p) for p in ends]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out = []
    t0 = time.time()
    while len(out) < sum(ends.values()):
        if time.time() - t0 > WAIT_S:
            fail("kafka-python read %d of %d records in %d s" %
                 (len(out), sum(ends.values()), WAIT_S))
        for tp, msgs in c.poll(timeout_ms=500).items():
            out.extend((tp.partition, m.offset, m.value) for m in msgs)
    c.close()
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kafka", required=True)
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--runnel", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--records", type=int, default=3000)
    a = ap.parse_args()
    a.kafka = a.kafka.split(",")
    a.grpc = a.grpc.split(",")
    a.pids = [int(x) for x in a.pids.split(",")]
    out = subprocess.run([a.runnel, "--server", a.grpc[0], "topic", "create", a.topic,
                          "--queues", "3", "--replicas", "3"], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        fail("topic create: %s" % out.stderr)
    live = [1, 2, 3]
    st = wait_metadata(a, a.topic, live, "metadata")
    librdkafka_metadata(a, st, live)
    admin_checks(a, live)
    wait_made(a, st)
    pre = follower_checks(a, st)
    pre += hwm_checks(a, st)
    victim, acked = failover(a, st, pre)
    st = None
    live = [n for n in live if n != victim]
    st = wait_metadata(a, a.topic, live, "after the kill")
    if st[2][a.topic][0]["leader"] == victim:
        fail("partition 0 is still led by the killed node %d" % victim)
    ends = {}
    for p, q in st[2][a.topic].items():
        err, h = hwm(a.kafka[q["leader"] - 1], a.topic, p)
        if err:
            fail("partition %d: fetch from its new leader: error %d" % (p, err))
        ends[p] = h
    got = read_back(a, live, len(st[2][a.topic]), ends)
    check_read(a, acked, got, pre)
    kc = kcat_count(a, live, len(st[2][a.topic]))
    want = sorted((str(p).encode(), str(o).encode(), v) for p, recs in got.items()
                  for o, v in recs)
    if kc != want:
        fail("kcat read %d records, confluent-kafka %d (or different ones)" % (len(kc), len(want)))
    ok("kcat (bootstrap: the surviving nodes) reads the same %d records" % len(kc))
    kp = kafka_python_read(a, live, ends)
    if kp != sorted((p, o, v) for p, recs in got.items() for o, v in recs):
        fail("kafka-python read %d records, confluent-kafka %d (or different ones)" %
             (len(kp), len(want)))
    ok("kafka-python (bootstrap: the surviving nodes) reads the same %d records" % len(kp))


if __name__ == "__main__":
    main()
