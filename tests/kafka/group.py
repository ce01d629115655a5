#!/usr/bin/python3
"""group.py — Kafka consumer-group clients for tests/test_kafka_coord.c, on
confluent-kafka (librdkafka), run against runneld --kafka-listen.

Every process appends one line per event to a shared LOG file opened with
O_APPEND (one os.write per line), so the file's order is the order the
events happened in across processes:
    P <partition> <offset> <value>   a record produced (delivery report)
    A <name> <p,p,...>               a consumer's whole assignment (eager)
    V <name>                         its assignment revoked
    A+ <name> <p,p,...>              partitions added (cooperative-sticky)
    V- <name> <p,p,...>              partitions revoked (cooperative-sticky)
    R <name> <partition> <offset> <value>  a record read
    C <name> <partition> <next>      a commit of <next> that succeeded
    E <name> <what>                  a commit or consume error (allowed)
    X <name>                         a consumer closed (LeaveGroup sent)

Modes (exit status 0 = as expected; anything else prints why):
    produce BOOT TOPIC FIRST N PARTS LOG   values m-FIRST.., partition i % PARTS
    consume BOOT TOPIC GROUP LOG NAME [STRATEGY]  until SIGTERM, then close();
                                           STRATEGY: range (default), roundrobin
                                           or cooperative-sticky
    wait-assign LOG SECONDS PARTS NAME...  the named consumers' latest
                                           assignments split 0..PARTS-1
    wait-read LOG SECONDS                  every P read and committed past
    check LOG                              no record lost, none read below a
                                           commit made before the read
    admin BOOT GROUP                       ListGroups + DescribeGroups through
                                           AdminClient.list_groups: one line
                                           "group STATE PROTO_TYPE PROTO N" and
                                           "member ID CLIENT_ID HOST" lines
    kp-admin BOOT GROUP TOPIC              the same through kafka-python's
                                           KafkaAdminClient (ListGroups,
                                           DescribeGroups v1+, OffsetFetch with
                                           null topics): "group ..." as admin,
                                           then "offset TOPIC P OFFSET" lines
"""
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

FAST = {
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 500,
    "topic.metadata.refresh.interval.ms": 1000,
}


class Log:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def __call__(self, line):
        os.write(self.fd, (line + "\n").encode())


def produce(boot, topic, first, n, parts, path):
    log = Log(path)
    p = Producer({"bootstrap.servers": boot, "linger.ms": 5, **FAST})
    failed = []

    def dr(err, m):
        if err:
            failed.append(str(err))
        else:
            log("P %d %d %s" % (m.partition(), m.offset(), m.value().decode()))

    for i in range(first, first + n):
        while True:
            try:
                p.produce(topic, value=b"m-%d" % i, partition=i % parts, on_delivery=dr)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(30)
    if left or failed:
        print("produce: %d undelivered, errors %s" % (left, failed[:3]))
        return 1
    return 0


def consume(boot, topic, group, path, name, strategy="range"):
    log = Log(path)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    c = Consumer({
        "bootstrap.servers": boot, "group.id": group, "client.id": name,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 4000, "heartbeat.interval.ms": 300,
        "partition.assignment.strategy": strategy, **FAST})
    coop = strategy == "cooperative-sticky"

    def plist(parts):
        return ",".join(str(p.partition) for p in sorted(parts, key=lambda x: x.partition))

    def on_assign(cons, parts):
        log("%s %s %s" % ("A+" if coop else "A", name, plist(parts)))

    def on_revoke(cons, parts):
        log(("V- %s %s" % (name, plist(parts))) if coop else "V %s" % name)

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stop:
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            log("E %s consume %s" % (name, str(m.error()).replace("\n", " ")))
            continue
        log("R %s %d %d %s" % (name, m.partition(), m.offset(), m.value().decode()))
        try:
            c.commit(message=m, asynchronous=False)
            log("C %s %d %d" % (name, m.partition(), m.offset() + 1))
        except KafkaException as e:
            log("E %s commit %s" % (name, str(e).replace("\n", " ")))
    c.close()
    log("X %s" % name)
    return 0


def read_log(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def assignments(lines):
    cur = {}
    for w in lines:
        if w[0] not in ("A", "A+", "V-", "V", "X"):
            continue
        parts = [int(x) for x in w[2].split(",")] if len(w) > 2 and w[2] else []
        if w[0] == "A":
            cur[w[1]] = parts
        elif w[0] == "A+":
            cur[w[1]] = sorted(set(cur.get(w[1], [])) | set(parts))
        elif w[0] == "V-":
            cur[w[1]] = sorted(set(cur.get(w[1], [])) - set(parts))
        elif w[0] in ("V", "X"):
            cur[w[1]] = []
    return cur


def wait_assign(path, secs, parts, names):
    deadline = time.time() + secs
    while True:
        cur = assignments(read_log(path))
        got = sorted(p for n in names for p in cur.get(n, []))
        if got == list(range(parts)) and all(cur.get(n) for n in names):
            print("assigned: %s" % {n: cur[n] for n in names})
            return 0
        if time.time() > deadline:
            print("wait-assign: after %ss the assignments are %s (want %s to split 0..%d)"
                  % (secs, cur, names, parts - 1))
            return 1
        time.sleep(0.1)


def wait_read(path, secs):
    deadline = time.time() + secs
    while True:
        lines = read_log(path)
        produced = {(int(w[1]), int(w[2])) for w in lines if w[0] == "P"}
        read = {(int(w[2]), int(w[3])) for w in lines if w[0] == "R"}
        committed = {}
        for w in lines:
            if w[0] == "C":
                p = int(w[2])
                committed[p] = max(committed.get(p, 0), int(w[3]))
        missing = sorted(produced - read)
        uncommitted = sorted(po for po in produced if committed.get(po[0], 0) <= po[1])
        if not missing and not uncommitted:
            print("read and committed: %d records" % len(produced))
            return 0
        if time.time() > deadline:
            print("wait-read: after %ss, %d of %d records unread (first %s), %d uncommitted "
                  "(first %s); commits %s" % (secs, len(missing), len(produced), missing[:5],
                                              len(uncommitted), uncommitted[:5], committed))
            return 1
        time.sleep(0.1)


def check(path):
    lines = read_log(path)
    committed, bad, reads, values = {}, [], {}, {}
    for w in lines:
        if w[0] == "C":
            p = int(w[2])
            committed[p] = max(committed.get(p, 0), int(w[3]))
        elif w[0] == "R":
            p, o = int(w[2]), int(w[3])
            if o < committed.get(p, 0):
                bad.append("%s read partition %d offset %d below the commit %d"
                           % (w[1], p, o, committed[p]))
            reads[(p, o)] = reads.get((p, o), 0) + 1
            values[(p, o)] = w[4]
    produced = [(int(w[1]), int(w[2]), w[3]) for w in lines if w[0] == "P"]
    for p, o, v in produced:
        if (p, o) not in reads:
            bad.append("record %s (partition %d offset %d) never read" % (v, p, o))
        elif values[(p, o)] != v:
            bad.append("partition %d offset %d read as %s, produced as %s" % (p, o, values[(p, o)], v))
    twice = sum(1 for k in reads if reads[k] > 1)
    print("check: %d produced, %d distinct read, %d read more than once (each after its "
          "last commit), %d problems" % (len(produced), len(reads), twice, len(bad)))
    for b in bad[:20]:
        print("  " + b)
    return 1 if bad else 0


def admin(boot, group):
    a = AdminClient({"bootstrap.servers": boot, **FAST})
    groups = a.list_groups(timeout=10)
    found = [g for g in groups if g.id == group]
    print("listed: %s" % sorted(g.id for g in groups))
    if not found:
        print("group %s not listed" % group)
        return 1
    g = found[0]
    if g.error is not None and g.error.code() != 0:
        print("group %s: error %s" % (group, g.error))
        return 1
    print("group %s %s %s %s %d" % (g.id, g.state, g.protocol_type or "-", g.protocol or "-",
                                   len(g.members)))
    for m in g.members:
        print("member %s %s %s assignment %d bytes" % (m.id, m.client_id, m.client_host,
                                                        len(m.assignment or b"")))
    return 0


def kp_admin(boot, group, topic):
    from kafka.admin import KafkaAdminClient
    a = KafkaAdminClient(bootstrap_servers=boot, client_id="kp-admin")
    listed = a.list_consumer_groups()
    print("listed: %s" % sorted(listed))
    if not any(g[0] == group for g in listed):
        print("group %s not listed" % group)
        return 1
    d = a.describe_consumer_groups([group])[0]
    print("group %s %s %s %s %d" % (d.group, d.state, d.protocol_type or "-", d.protocol or "-",
                                   len(d.members)))
    for m in d.members:
        print("member %s %s %s" % (m.member_id, m.client_id, m.client_host))
    offs = a.list_consumer_group_offsets(group)
    for tp in sorted(offs, key=lambda x: (x.topic, x.partition)):
        print("offset %s %d %d" % (tp.topic, tp.partition, offs[tp].offset))
    a.close()
    return 0


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "produce" and len(argv) == 8:
        return produce(argv[2], argv[3], int(argv[4]), int(argv[5]), int(argv[6]), argv[7])
    if mode == "consume" and len(argv) in (7, 8):
        return consume(*argv[2:])
    if mode == "wait-assign" and len(argv) >= 6:
        return wait_assign(argv[2], float(argv[3]), int(argv[4]), argv[5:])
    if mode == "wait-read" and len(argv) == 4:
        return wait_read(argv[2], float(argv[3]))
    if mode == "check" and len(argv) == 3:
        return check(argv[2])
    if mode == "admin" and len(argv) == 4:
        return admin(argv[2], argv[3])
    if mode == "kp-admin" and len(argv) == 5:
        return kp_admin(argv[2], argv[3], argv[4])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
