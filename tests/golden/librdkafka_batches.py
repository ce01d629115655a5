#!/usr/bin/python3
"""Write tests/golden/librdkafka_{gzip,snappy,lz4,zstd}.bin: the golden record
set (tests/golden/README.md) as librdkafka 2.0.2 (Debian's
python3-confluent-kafka) compresses it, one file per codec.

No broker is needed: the producer runs against librdkafka's in-process mock
cluster (test.mock.num.brokers), which keeps produced batches as received;
kafka-python then fetches partition 0 from that mock broker and the raw
records bytes of the Fetch response (one batch) are saved. The producer is
idempotent, so producer id (the mock's, random), epoch 0 and base sequence 0
are set. tests/test_batch.c (test_golden_librdkafka) decodes the files.

Run: /usr/bin/python3 tests/golden/librdkafka_batches.py
"""
import logging
import os
import re
import struct

from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition
import kafka.record.memory_records as memory_records

HERE = os.path.dirname(os.path.abspath(__file__))
BIG = (b"runnel " * 43)[:300]
RECORDS = [
    (1700000000000, b"user-1", b'{"n":1}', None),
    (1700000000007, None, b"second", [("trace", b"abc"), ("empty", None)]),
    (1699999999990, b"", None, None),
    (1700000001000, b"user-3", BIG, [("h", b"")]),
    (1700000000500, b"k4", b"last", None),
]

caught = []
_init = memory_records.MemoryRecords.__init__


def _catch(self, data):
    caught.append(bytes(data))
    _init(self, data)


memory_records.MemoryRecords.__init__ = _catch


class _Logs(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def one(codec, name):
    logs = _Logs()
    log = logging.getLogger("rdkafka-" + name)
    log.addHandler(logs)
    log.setLevel(logging.DEBUG)
    p = Producer({"test.mock.num.brokers": 1, "compression.type": name, "linger.ms": 100,
                  "enable.idempotence": True, "logger": log, "debug": "mock"})
    for ts, key, value, headers in RECORDS:
        p.produce("t", key=key, value=value, headers=headers, timestamp=ts, partition=0)
    assert p.flush(10) == 0
    boot = None
    for line in logs.lines:
        m = re.search(r"bootstrap\.servers=([^,\s]+)", line)
        if m:
            boot = m.group(1)
    assert boot, "mock cluster address not logged"
    del caught[:]
    c = KafkaConsumer(bootstrap_servers=boot, api_version=(2, 5, 0),
                      auto_offset_reset="earliest", enable_auto_commit=False)
    tp = TopicPartition("t", 0)
    c.assign([tp])
    got = sum(len(v) for v in c.poll(timeout_ms=5000).values())
    c.close()
    assert got == len(RECORDS), got
    batch = [b for b in caught if len(b) > 61][0]
    assert struct.unpack(">i", batch[8:12])[0] + 12 == len(batch), "not one batch"
    assert batch[22] & 7 == codec, (name, batch[22])
    path = os.path.join(HERE, "librdkafka_%s.bin" % name)
    with open(path, "wb") as f:
        f.write(batch)
    print("wrote %s (%d bytes)" % (path, len(batch)))


for codec, name in ((1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")):
    one(codec, name)
