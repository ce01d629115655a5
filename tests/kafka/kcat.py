#!/usr/bin/python3
"""tests/kafka/kcat.py - kcat (librdkafka underneath) against runneld's Kafka
front, driving the kcat program as a user would. Run by
tests/test_kafka_clients.c; by hand:

    /usr/bin/python3 tests/kafka/kcat.py 127.0.0.1:9092 roundtrip PREFIX
    /usr/bin/python3 tests/kafka/kcat.py 127.0.0.1:9092 produce TOPIC N TAG
    /usr/bin/python3 tests/kafka/kcat.py 127.0.0.1:9092 consume TOPIC N TAG

roundtrip: per codec, topic PREFIX-<codec> (auto-created):
  `kcat -P -K : -H src=kcat -z CODEC` of N lines "k-<i>:<tag>-<i>"; `kcat -L`
  lists the topic; `kcat -C -J -o beginning -e` reads them back (offsets,
  keys, values, the header, timestamps rising and recent); `-o 77 -c 5`
  starts exactly at offset 77 (mid-batch); `kcat -Q -t TOPIC:0:TS` with
  record j's timestamp gives the first record at or after it.
produce / consume: N lines "<tag>-<i>" (no key) into or out of TOPIC, for
  the interoperation tests with bin/runnel and bin/streamsql.
Exit status 0 when every check passed; a failure is printed on stderr.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import CODECS, check_codec, fail, ok, rdkafka_compresses  # noqa: E402

N = 200


def kcat(args, data=None, timeout=30):
    r = subprocess.run(["kcat"] + args, input=data, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        fail("kcat %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.decode()[-2000:]))
    return r.stdout


def consume_json(bootstrap, topic, *extra):
    out = kcat(["-b", bootstrap, "-C", "-t", topic, "-p", "0", "-J", "-e", "-q"] + list(extra))
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def roundtrip(bootstrap, prefix):
    for codec in CODECS:
        topic = "%s-%s" % (prefix, codec)
        tag = "kcat-" + codec
        lines = "".join("k-%d:%s-%d %s\n" % (i, tag, i, "x" * (i % 50)) for i in range(N))
        t0 = int(time.time() * 1000)
        kcat(["-b", bootstrap, "-P", "-t", topic, "-K", ":", "-H", "src=kcat", "-z", codec,
              "-X", "linger.ms=20"], lines.encode())
        meta = kcat(["-b", bootstrap, "-L", "-t", topic]).decode()
        if ('topic "%s" with 1 partitions' % topic) not in meta:
            fail("%s: kcat -L says %r" % (topic, meta))
        check_codec(bootstrap, topic, codec,
                    codec if rdkafka_compresses(bootstrap, codec) else "none")
        recs = consume_json(bootstrap, topic, "-o", "beginning")
        if len(recs) != N:
            fail("%s: read %d records, wanted %d" % (topic, len(recs), N))
        prev = 0
        for i, r in enumerate(recs):
            want = "%s-%d %s" % (tag, i, "x" * (i % 50))
            if r["offset"] != i or r["key"] != "k-%d" % i or r["payload"] != want:
                fail("%s: record %d is %r" % (topic, i, r))
            if r.get("headers") != ["src", "kcat"]:
                fail("%s: record %d headers %r" % (topic, i, r.get("headers")))
            if r["tstype"] != "create" or r["ts"] < prev or abs(r["ts"] - t0) > 60000:
                fail("%s: record %d timestamp %r %r (start %d)" % (topic, i, r["tstype"],
                                                                   r["ts"], t0))
            prev = r["ts"]
        mid = consume_json(bootstrap, topic, "-o", "77", "-c", "5")
        if [r["offset"] for r in mid] != [77, 78, 79, 80, 81]:
            fail("%s: from offset 77 read offsets %r" % (topic, [r["offset"] for r in mid]))
        j = 123
        q = kcat(["-b", bootstrap, "-Q", "-t", "%s:0:%d" % (topic, recs[j]["ts"])]).decode()
        first = min(i for i in range(N) if recs[i]["ts"] >= recs[j]["ts"])
        if ("offset %d" % first) not in q:
            fail("%s: kcat -Q for record %d's time %d: %r, wanted offset %d" %
                 (topic, j, recs[j]["ts"], q, first))
        ok("kcat %s: %d records, mid-batch read, -Q by time" % (codec, N))


def produce(bootstrap, topic, n, tag):
    lines = "".join("%s-%d\n" % (tag, i) for i in range(n))
    kcat(["-b", bootstrap, "-P", "-t", topic, "-p", "0"], lines.encode())
    ok("kcat produced %d records to %s" % (n, topic))


def consume(bootstrap, topic, n, tag):
    recs = consume_json(bootstrap, topic, "-o", "beginning")
    got = [r["payload"] for r in recs]
    want = ["%s-%d" % (tag, i) for i in range(n)]
    if got != want:
        fail("%s: kcat read %d records %r..., wanted %r..." % (topic, len(got), got[:3],
                                                              want[:3]))
    ok("kcat read %d records from %s" % (n, topic))


def main():
    bootstrap, mode = sys.argv[1], sys.argv[2]
    if mode == "roundtrip":
        roundtrip(bootstrap, sys.argv[3])
    elif mode == "produce":
        produce(bootstrap, sys.argv[3], int(sys.argv[4]), sys.argv[5])
    elif mode == "consume":
        consume(bootstrap, sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        fail("unknown mode " + mode)


if __name__ == "__main__":
    main()
