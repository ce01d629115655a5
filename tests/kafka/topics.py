#!/usr/bin/python3
"""Topic creation and deletion through runneld's Kafka front, with two real
admin clients (confluent-kafka's AdminClient over librdkafka, kafka-python's
KafkaAdminClient), driven by tests/test_kafka_topics.c.

usage: topics.py confluent HOST:PORT
       topics.py kafkapython HOST:PORT
       topics.py auto HOST:PORT QUEUES       (runneld --kafka-auto-create-queues QUEUES)
       topics.py hostile HOST:PORT           (raw frames the handlers must refuse)

Every check raises on a mismatch; the script exits 0 only when all passed and
prints one line per check, so a failure names what broke.
"""
import sys
import time


def ok(what):
    print("ok:", what, flush=True)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)
    ok(what)


# ---- confluent-kafka (librdkafka) -------------------------------------------------

def c_results(fs):
    """{topic: None or KafkaError code} of a create/delete future dict."""
    out = {}
    for t, f in fs.items():
        try:
            f.result(timeout=30)
            out[t] = None
        except Exception as e:                       # KafkaException
            err = e.args[0]
            out[t] = (err.code(), err.str())
    return out


def c_topics(a):
    return a.list_topics(timeout=10).topics


def confluent(bs):
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bs})

    r = c_results(a.create_topics([NewTopic("k3", 3, 1), NewTopic("kdef", -1, -1)],
                                  operation_timeout=20))
    expect(r == {"k3": None, "kdef": None}, "create k3 (3 partitions) and kdef (-1, -1): %r" % r)
    t = c_topics(a)
    expect(len(t["k3"].partitions) == 3, "k3 has 3 partitions in Metadata")
    expect(len(t["kdef"].partitions) == 1, "kdef has the default 1 partition")

    r = c_results(a.create_topics([NewTopic("k3", 3, 1)]))
    expect(r["k3"] and r["k3"][0] == KafkaError.TOPIC_ALREADY_EXISTS,
           "create k3 again: TOPIC_ALREADY_EXISTS %r" % r)

    bad = ["bad/name", "..", ".", "x" * 250, "sp ace", "uni\u00e9"]
    r = c_results(a.create_topics([NewTopic(n, 1, 1) for n in bad]))
    for n in bad:
        expect(r[n] and r[n][0] == KafkaError.TOPIC_EXCEPTION,
               "invalid name %.20r: INVALID_TOPIC_EXCEPTION %r" % (n, r[n]))
    expect("1-249 characters" in r["bad/name"][1], "the message says which names are valid")

    r = c_results(a.create_topics([NewTopic("vonly", 2, 1), NewTopic("k3", 1, 1)],
                                  validate_only=True))
    expect(r["vonly"] is None, "validate_only: a valid new topic passes")
    expect(r["k3"] and r["k3"][0] == KafkaError.TOPIC_ALREADY_EXISTS,
           "validate_only: an existing one is TOPIC_ALREADY_EXISTS")
    expect("vonly" not in c_topics(a), "validate_only created nothing")

    r = c_results(a.create_topics([
        NewTopic("rf3", 1, 3),
        NewTopic("assign", 2, replica_assignment=[[0], [0]]),
        NewTopic("cfgbad", 1, 1, config={"retention.ms": "1000"}),
        NewTopic("cfgunk", 1, 1, config={"frobnicate.level": "9"}),
        NewTopic("cfgcompact", 1, 1, config={"cleanup.policy": "compact"}),
        NewTopic("cfgok", 2, 1, config={"cleanup.policy": "delete",
                                        "compression.type": "producer"}),
        NewTopic("zero", 0, 1),
    ]))
    expect(r["rf3"] and r["rf3"][0] == KafkaError.INVALID_REPLICATION_FACTOR,
           "replication factor 3: INVALID_REPLICATION_FACTOR")
    expect(r["assign"] and r["assign"][0] == KafkaError.INVALID_REPLICA_ASSIGNMENT,
           "manual assignment: INVALID_REPLICA_ASSIGNMENT")
    expect(r["cfgbad"] and r["cfgbad"][0] == KafkaError.INVALID_CONFIG and
           "per store" in r["cfgbad"][1], "retention.ms: INVALID_CONFIG, set per store %r"
           % (r["cfgbad"],))
    expect(r["cfgunk"] and r["cfgunk"][0] == KafkaError.INVALID_CONFIG and
           "frobnicate.level" in r["cfgunk"][1], "unknown config: INVALID_CONFIG naming it")
    expect(r["cfgcompact"] and r["cfgcompact"][0] == KafkaError.INVALID_CONFIG,
           "cleanup.policy=compact: INVALID_CONFIG")
    expect(r["cfgok"] is None, "configs runnel honours are accepted")
    expect(r["zero"] and r["zero"][0] == KafkaError.INVALID_PARTITIONS,
           "0 partitions: INVALID_PARTITIONS")
    t = c_topics(a)
    for n in ("rf3", "assign", "cfgbad", "cfgunk", "cfgcompact", "zero"):
        expect(n not in t, "refused topic %s was not created" % n)

    # Delete a topic with records, then recreate it: offset 0, no old records.
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True})
    for i in range(5):
        p.produce("dr", value=b"old-%d" % i, partition=0)
    expect(p.flush(20) == 0, "5 records produced to dr (auto-created)")
    r = c_results(a.delete_topics(["dr", "nope"], operation_timeout=20))
    expect(r["dr"] is None, "delete dr")
    expect(r["nope"] and r["nope"][0] == KafkaError.UNKNOWN_TOPIC_OR_PART,
           "delete an unknown topic: UNKNOWN_TOPIC_OR_PARTITION")
    expect("dr" not in c_topics(a), "dr is gone from Metadata")
    r = c_results(a.create_topics([NewTopic("dr", 2, 1)]))
    expect(r["dr"] is None, "recreate dr with 2 partitions")
    p.produce("dr", value=b"new-0", partition=0)
    expect(p.flush(20) == 0, "a record produced to the new dr")
    c = Consumer({"bootstrap.servers": bs, "group.id": "topics-test",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("dr", 0, 0)])
    got = []
    deadline = time.time() + 20
    while time.time() < deadline and not got:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append((m.offset(), m.value()))
    c.close()
    expect(got == [(0, b"new-0")], "the new dr holds only its record, at offset 0: %r" % got)
    lo, hi = None, None
    c = Consumer({"bootstrap.servers": bs, "group.id": "topics-test2"})
    lo, hi = c.get_watermark_offsets(TopicPartition("dr", 0), timeout=10)
    c.close()
    expect((lo, hi) == (0, 1), "dr partition 0 watermarks (0, 1): %r" % ((lo, hi),))


# ---- kafka-python ------------------------------------------------------------------

def kafkapython(bs):
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import (InvalidReplicationFactorError, InvalidTopicError,
                              TopicAlreadyExistsError, UnknownTopicOrPartitionError)
    a = KafkaAdminClient(bootstrap_servers=bs, client_id="topics-test", request_timeout_ms=20000)

    def codes(resp):
        # topic_errors: (name, code[, message]) per topic
        return {e[0]: e[1] for e in resp.topic_errors}

    r = a.create_topics([NewTopic("py1", 2, 1)])
    expect(codes(r) == {"py1": 0}, "kafka-python: create py1 %r" % (r,))
    expect("py1" in a.list_topics(), "kafka-python: py1 is listed")
    try:
        a.create_topics([NewTopic("py1", 2, 1)])
        raise AssertionError("creating py1 again did not fail")
    except TopicAlreadyExistsError:
        ok("kafka-python: create py1 again: TopicAlreadyExistsError")
    try:
        a.create_topics([NewTopic("bad/py", 1, 1)])
        raise AssertionError("creating bad/py did not fail")
    except InvalidTopicError:
        ok("kafka-python: invalid name: InvalidTopicError")
    try:
        a.create_topics([NewTopic("rfpy", 1, 2)])
        raise AssertionError("replication factor 2 did not fail")
    except InvalidReplicationFactorError:
        ok("kafka-python: replication factor 2: InvalidReplicationFactorError")
    r = a.create_topics([NewTopic("pyv", 1, 1)], validate_only=True)
    expect(codes(r) == {"pyv": 0}, "kafka-python: validate_only passes")
    expect("pyv" not in a.list_topics(), "kafka-python: validate_only created nothing")

    r = a.delete_topics(["py1"])
    expect({e[0]: e[1] for e in r.topic_error_codes} == {"py1": 0}, "kafka-python: delete py1")
    expect("py1" not in a.list_topics(), "kafka-python: py1 is gone")
    try:
        a.delete_topics(["py1"])
        raise AssertionError("deleting py1 twice did not fail")
    except UnknownTopicOrPartitionError:
        ok("kafka-python: delete py1 again: UnknownTopicOrPartitionError")
    r = a.create_topics([NewTopic("py1", 1, 1)])
    expect(codes(r) == {"py1": 0}, "kafka-python: recreate py1")
    a.close()


# ---- auto-creation via Metadata ----------------------------------------------------

def metadata(bs, topic, allow):
    from kafka.client_async import KafkaClient
    from kafka.protocol.metadata import MetadataRequest
    c = KafkaClient(bootstrap_servers=bs, client_id="topics-test")
    try:
        node = None
        deadline = time.time() + 20
        while time.time() < deadline:
            node = c.least_loaded_node()
            if node is not None and c.ready(node):
                break
            c.poll(timeout_ms=100)
        f = c.send(node, MetadataRequest[4](topics=[topic], allow_auto_topic_creation=allow))
        c.poll(future=f, timeout_ms=20000)
        if not f.is_done or f.failed():
            raise AssertionError("Metadata for %s: %r" % (topic, f.exception))
        t = f.value.topics[0]          # (error_code, name, is_internal, partitions)
        return t[0], len(t[3])
    finally:
        c.close()


def auto(bs, queues):
    from confluent_kafka.admin import AdminClient, NewTopic
    n = int(queues)
    err, parts = metadata(bs, "auto-no", False)
    expect(err == 3 and parts == 0,
           "Metadata with allow_auto_topic_creation false: unknown topic (%d, %d)" % (err, parts))
    err, parts = metadata(bs, "auto-yes", True)
    if n == 0:
        expect(err == 3 and parts == 0, "auto-creation off: Metadata leaves auto-yes unknown")
    else:
        expect(err == 0 and parts == n, "Metadata auto-created auto-yes with %d partitions "
               "(%d, %d)" % (n, err, parts))
    a = AdminClient({"bootstrap.servers": bs})
    r = c_results(a.create_topics([NewTopic("auto-def", -1, -1)]))
    expect(r["auto-def"] is None, "CreateTopics with num_partitions -1")
    want = n if n > 0 else 1
    got = len(a.list_topics(timeout=10).topics["auto-def"].partitions)
    expect(got == want, "num_partitions -1 gives %d partitions (got %d)" % (want, got))


# ---- raw frames ---------------------------------------------------------------------

def raw(bs, api, version, body):
    """Send one request frame; the response body, or None when the broker
    closed the connection."""
    import socket
    import struct
    host, port = bs.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=20)
    cid = b"topics-test"
    hdr = struct.pack(">hhih", api, version, 7, len(cid)) + cid
    s.sendall(struct.pack(">i", len(hdr) + len(body)) + hdr + body)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
                break
    finally:
        s.close()
    if len(data) < 8:
        return None
    return data[8:]


def hostile(bs):
    import struct

    def name(n):
        return struct.pack(">h", len(n)) + n

    def ctopic(n, parts=1, rf=1):
        return name(n) + struct.pack(">ihii", parts, rf, 0, 0)

    many = struct.pack(">i", 1001) + b"".join(ctopic(b"m%d" % i) for i in range(1001))
    expect(raw(bs, 19, 0, many + struct.pack(">i", 1000)) is None,
           "CreateTopics with 1001 topics closes the connection")
    expect(raw(bs, 19, 0, struct.pack(">i", 1) + ctopic(b"trunc")[:-3]) is None,
           "a truncated CreateTopics closes the connection")
    expect(raw(bs, 19, 0, struct.pack(">i", 100000000)) is None,
           "a topic count past the frame closes the connection")
    expect(raw(bs, 20, 0, struct.pack(">i", 2) + name(b"x")) is None,
           "a truncated DeleteTopics closes the connection")
    # A name twice: INVALID_REQUEST (42) for both, nothing created; v0 layout.
    body = raw(bs, 19, 0, struct.pack(">i", 2) + ctopic(b"twice") + ctopic(b"twice") +
               struct.pack(">i", 1000))
    expect(body is not None, "a name twice is answered")
    n = struct.unpack(">i", body[:4])[0]
    codes = []
    at = 4
    for _ in range(n):
        ln = struct.unpack(">h", body[at:at + 2])[0]
        at += 2 + ln
        codes.append(struct.unpack(">h", body[at:at + 2])[0])
        at += 2
    expect(codes == [42, 42], "both occurrences get INVALID_REQUEST: %r" % codes)
    # Nothing of the refused requests was created, and the broker still answers.
    body = raw(bs, 20, 0, struct.pack(">i", 2) + name(b"m0") + name(b"twice") +
               struct.pack(">i", 1000))
    expect(body is not None and body.count(struct.pack(">h", 3)) >= 2,
           "m0 and twice do not exist (UNKNOWN_TOPIC_OR_PARTITION)")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode, bs = sys.argv[1], sys.argv[2]
    if mode == "confluent":
        confluent(bs)
    elif mode == "kafkapython":
        kafkapython(bs)
    elif mode == "hostile":
        hostile(bs)
    elif mode == "auto" and len(sys.argv) == 4:
        auto(bs, sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print("all passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
