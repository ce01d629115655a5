#!/usr/bin/python3
"""tests/kafka/rdkafka.py - confluent-kafka (librdkafka) against runneld's
Kafka front. Run by tests/test_kafka_clients.c; by hand:

    /usr/bin/python3 tests/kafka/rdkafka.py 127.0.0.1:9092 roundtrip PREFIX
    /usr/bin/python3 tests/kafka/rdkafka.py 127.0.0.1:9092 idem-produce TOPIC N
    /usr/bin/python3 tests/kafka/rdkafka.py 127.0.0.1:9092 idem-check TOPIC N

roundtrip: per codec, topic PREFIX-<codec> (auto-created by the produce):
  produce N records (common.py) in several batches and wait for every
  delivery report; read them all back from offset 0 by assignment (no
  group) and check offsets, keys, values, headers, timestamps; read from a
  mid-batch offset and check the first record is exactly that one; ask
  offsets_for_times (ListOffsets by time) for record j's timestamp and for
  one just past it, and check offsets j and j + 1.
idem-produce: an idempotent producer (enable.idempotence=true) sends
  "m-<i>" for i < N, slowly enough that the test can kill -9 and restart
  runneld under it; exits 0 when every message was delivered.
idem-check: the topic holds exactly m-0 .. m-<N-1>, once each, in order.
Exit status 0 when every check passed; a failure is printed on stderr.
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition, KafkaException

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import (CODECS, check_codec, check_record, fail, headers, key, ok,  # noqa: E402
                    rdkafka_compresses, ts, value)

N = 300


def producer(bootstrap, **extra):
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": 64,
            "message.timeout.ms": 30000}
    conf.update(extra)
    return Producer(conf)


def consumer(bootstrap):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "rdkafka-test-unused",
                     "enable.auto.commit": False, "enable.auto.offset.store": False,
                     "fetch.wait.max.ms": 100, "fetch.message.max.bytes": 4096,
                     "api.version.request": True})


def produce_all(p, topic, tag, n):
    errors = []

    def report(err, msg):
        if err is not None:
            errors.append(str(err))

    for i in range(n):
        p.produce(topic, value=value(tag, i), key=key(i), headers=headers(i),
                  timestamp=ts(i), on_delivery=report)
        if i % 50 == 49:
            p.flush(30)            # several batches per topic
    left = p.flush(30)
    if left or errors:
        fail("%s: %d undelivered, errors %s" % (topic, left, errors[:3]))


def read(c, topic, start, n, tag, where):
    c.assign([TopicPartition(topic, 0, start)])
    i = start
    deadline = time.time() + 30
    while i < n:
        if time.time() > deadline:
            fail("%s: read %d of %d records in 30 s" % (where, i - start, n - start))
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail("%s: %s" % (where, m.error()))
        check_record(where, i, m.offset(), m.key(), m.value(), m.headers(),
                     m.timestamp()[1], tag)
        i += 1
    c.unassign()


def roundtrip(bootstrap, prefix):
    c = consumer(bootstrap)
    for codec in CODECS:
        topic = "%s-%s" % (prefix, codec)
        tag = "rdk-" + codec
        p = producer(bootstrap, **{"compression.codec": codec})
        produce_all(p, topic, tag, N)
        check_codec(bootstrap, topic, codec,
                    codec if rdkafka_compresses(bootstrap, codec) else "none")
        read(c, topic, 0, N, tag, topic + " from 0")
        read(c, topic, 77, N, tag, topic + " from 77 (mid-batch)")
        j = 123
        got = [c.offsets_for_times([TopicPartition(topic, 0, t)], 10)[0].offset
               for t in (ts(j), ts(j) - 1, ts(j) + 1, ts(N) + 5)]
        if got != [j, j, j + 1, -1]:
            fail("%s: offsets_for_times(ts(%d) +0, -1, +1, past the end) = %r" % (topic, j, got))
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), 10)
        if (lo, hi) != (0, N):
            fail("%s: watermarks %d..%d, wanted 0..%d" % (topic, lo, hi, N))
        ok("rdkafka %s: %d records, mid-batch read, offsets_for_times" % (codec, N))
    c.close()


def idem_produce(bootstrap, topic, n):
    errors = []
    delivered = [0]

    def report(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered[0] += 1

    p = producer(bootstrap, **{"enable.idempotence": True, "linger.ms": 2,
                               "message.timeout.ms": 60000, "retry.backoff.ms": 100,
                               "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200})
    for i in range(n):
        while True:
            try:
                p.produce(topic, value=b"m-%d" % i, on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if i % 20 == 19:
            time.sleep(0.01)
            print("sent %d delivered %d" % (i + 1, delivered[0]), flush=True)
    left = p.flush(60)
    if left or errors:
        fail("%s: %d undelivered, errors %s" % (topic, left, errors[:5]))
    ok("idempotent producer: %d delivered" % delivered[0])


def idem_check(bootstrap, topic, n):
    c = consumer(bootstrap)
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail("%s: %s" % (topic, m.error()))
        got.append(m.value())
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), 10)
    c.close()
    want = [b"m-%d" % i for i in range(n)]
    if got != want or hi != n:
        dup = len(got) - len(set(got))
        first = next((i for i in range(min(len(got), n)) if got[i] != want[i]), None)
        fail("%s: %d records (high watermark %d, %d duplicates), first difference at %r "
             "(got %r)" % (topic, len(got), hi, dup, first,
                           got[first] if first is not None else None))
    ok("idempotent producer: %d records exactly once, in order" % n)


def main():
    bootstrap, mode = sys.argv[1], sys.argv[2]
    if mode == "roundtrip":
        roundtrip(bootstrap, sys.argv[3])
    elif mode == "idem-produce":
        idem_produce(bootstrap, sys.argv[3], int(sys.argv[4]))
    elif mode == "idem-check":
        idem_check(bootstrap, sys.argv[3], int(sys.argv[4]))
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        fail("KafkaException: %s" % e)
