#!/usr/bin/python3
"""tests/kafka/kafka_python.py - kafka-python (2.0) against runneld's Kafka
front. Run by tests/test_kafka_clients.c; by hand:

    /usr/bin/python3 tests/kafka/kafka_python.py 127.0.0.1:9092 roundtrip PREFIX
    /usr/bin/python3 tests/kafka/kafka_python.py 127.0.0.1:9092 check TOPIC TAG CODEC

roundtrip: per codec, topic PREFIX-<codec> (auto-created by the
  producer's Metadata): produce N records (common.py) in several batches
  and wait for every future; check the stored batches carry the codec
  (a raw Fetch); read everything back from offset 0 by assignment (no
  group) and check offsets, keys, values, headers, timestamps; read from a
  mid-batch offset; offsets_for_times (ListOffsets by time) for record j's
  timestamp, one just before and one just after; end_offsets.
check: TOPIC holds the N records of common.py with values tagged TAG, in
  batches compressed with CODEC (what kafkajs.js produce wrote).
Exit status 0 when every check passed; a failure is printed on stderr.
kafka-python's snappy, lz4 and zstd need python3-snappy, python3-lz4 and
python3-zstandard (scripts/install-deps.sh).
"""
import os
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

sys.path.insert(0, os.path.dirname(__file__))
from common import (CODECS, check_codec, check_record, fail, headers, key, ok,  # noqa: E402
                    ts, value)

N = 300


def produce_all(bootstrap, topic, tag, codec):
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=4096,
                      compression_type=None if codec == "none" else codec,
                      acks=1, request_timeout_ms=20000)
    futs = []
    for i in range(N):
        futs.append(p.send(topic, value=value(tag, i), key=key(i), headers=headers(i),
                           timestamp_ms=ts(i)))
        if i % 50 == 49:
            p.flush(30)
    p.flush(30)
    for i, f in enumerate(futs):
        md = f.get(timeout=30)
        if md.offset != i:
            fail("%s: record %d acknowledged at offset %d" % (topic, i, md.offset))
    p.close()


def read(c, topic, start, tag, where):
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, start)
    i = start
    deadline = time.time() + 30
    while i < N:
        if time.time() > deadline:
            fail("%s: read %d of %d records in 30 s" % (where, i - start, N - start))
        for m in c.poll(timeout_ms=500).get(tp, []):
            hdrs = [(k, v) for k, v in m.headers]
            check_record(where, i, m.offset, m.key, m.value, hdrs, m.timestamp, tag)
            i += 1
    c.unsubscribe()


def roundtrip(bootstrap, prefix):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      fetch_max_wait_ms=100, max_partition_fetch_bytes=4096,
                      request_timeout_ms=20000)
    for codec in CODECS:
        topic = "%s-%s" % (prefix, codec)
        tag = "kp-" + codec
        produce_all(bootstrap, topic, tag, codec)
        check_codec(bootstrap, topic, codec)
        read(c, topic, 0, tag, topic + " from 0")
        read(c, topic, 77, tag, topic + " from 77 (mid-batch)")
        tp = TopicPartition(topic, 0)
        j = 123
        got = []
        for t in (ts(j), ts(j) - 1, ts(j) + 1):
            r = c.offsets_for_times({tp: t})[tp]
            got.append((r.offset, r.timestamp) if r else None)
        want = [(j, ts(j)), (j, ts(j)), (j + 1, ts(j + 1))]
        if got != want:
            fail("%s: offsets_for_times %r, wanted %r" % (topic, got, want))
        if c.offsets_for_times({tp: ts(N) + 5})[tp] is not None:
            fail("%s: offsets_for_times past the last record is not None" % topic)
        if c.end_offsets([tp])[tp] != N or c.beginning_offsets([tp])[tp] != 0:
            fail("%s: beginning/end offsets %r %r" % (topic, c.beginning_offsets([tp]),
                                                      c.end_offsets([tp])))
        ok("kafka-python %s: %d records, mid-batch read, offsets_for_times" % (codec, N))
    c.close()


def check(bootstrap, topic, tag, codec):
    check_codec(bootstrap, topic, codec)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      fetch_max_wait_ms=100, request_timeout_ms=20000)
    read(c, topic, 0, tag, topic)
    read(c, topic, 77, tag, topic + " from 77")
    c.close()
    ok("kafka-python read back %s: %d records (%s)" % (topic, N, codec))


def main():
    bootstrap, mode = sys.argv[1], sys.argv[2]
    if mode == "roundtrip":
        roundtrip(bootstrap, sys.argv[3])
    elif mode == "check":
        check(bootstrap, sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    main()
