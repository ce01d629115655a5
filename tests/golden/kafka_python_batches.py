#!/usr/bin/python3
"""Write tests/golden/kafka_python_{gzip,snappy,lz4,zstd}.bin: the golden
record set (tests/golden/README.md) as kafka-python 2.0.2 (Debian's
python3-kafka) builds a RecordBatch v2 for a Produce request, one file per
compression codec. tests/test_batch.c (test_golden_kafka_python) decodes them.

Needs python3-kafka and the codec modules it uses: python3-snappy,
python3-lz4, python3-zstandard. Run: /usr/bin/python3 tests/golden/kafka_python_batches.py
"""
import os
from kafka.record.default_records import DefaultRecordBatchBuilder

HERE = os.path.dirname(os.path.abspath(__file__))
BIG = (b"runnel " * 43)[:300]
RECORDS = [
    (1700000000000, b"user-1", b'{"n":1}', []),
    (1700000000007, None, b"second", [("trace", b"abc"), ("empty", None)]),
    (1699999999990, b"", None, []),
    (1700000001000, b"user-3", BIG, [("h", b"")]),
    (1700000000500, b"k4", b"last", []),
]

for codec, name in ((1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                  producer_id=42, producer_epoch=3, base_sequence=100,
                                  batch_size=1 << 20)
    for i, (ts, key, value, headers) in enumerate(RECORDS):
        b.append(i, timestamp=ts, key=key, value=value, headers=headers)
    out = bytes(b.build())
    assert out[22] & 7 == codec, (name, out[22])
    path = os.path.join(HERE, "kafka_python_%s.bin" % name)
    with open(path, "wb") as f:
        f.write(out)
    print("wrote %s (%d bytes)" % (path, len(out)))
