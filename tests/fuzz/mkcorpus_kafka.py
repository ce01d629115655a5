#!/usr/bin/env python3
"""mkcorpus_kafka.py — seed corpora of the fuzz_kafka_* targets.

  python3 tests/fuzz/mkcorpus_kafka.py tests/fuzz/corpus
      writes corpus/kafka_req/ (one request frame per file: header and body,
      no size) and corpus/kafka_frame/ (a first byte choosing read sizes,
      then a stream of size-prefixed frames).

  python3 tests/fuzz/mkcorpus_kafka.py --capture BROKER_HOST:PORT LISTEN_PORT DIR
      a proxy on 127.0.0.1:LISTEN_PORT to a running runneld's Kafka port
      (started with --kafka-advertise 127.0.0.1:LISTEN_PORT, so that clients
      come back through the proxy after their first Metadata) that writes every request frame clients send through it into DIR as
      kafka_req seeds named client-API-vVERSION-N (run kcat or another
      client against LISTEN_PORT, then stop the proxy with Ctrl-C).

Invariants:
  1. Every API and version of kafka/api.c's rn_kapi_table (read from the
     source, so APIs added later are covered) gets at least one seed: a
     valid request for the APIs this script knows, a header with an empty
     and a zero-filled body for the others.
  2. The known requests are valid for their version (Kafka's *Request.json;
     flexible versions with compact forms and tagged fields) and name the
     fixtures of tests/fuzz/fuzz_rpc.h (topic "t" of 2 queues), so fuzzing
     starts from requests that reach the store.
  3. The "bound-*" seeds are the hostile requests of tests/test_kafka_hostile.c
     (counts over the per-request bounds of kafka/api.h, huge max_bytes,
     unknown topics over the auto-creation bound); replay checks they stay
     within its memory limit.
Not part of `make test` (its output is committed); standard library only.
"""
import os
import re
import socket
import struct
import sys
import threading

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def api_table():
    """(key, name, min, max, flex_min) of every entry of rn_kapi_table."""
    text = open(os.path.join(SRC, "kafka", "api.c")).read()
    body = text[text.index("rn_kapi_table[] = {"):]
    body = body[:body.index("};")]
    rows = re.findall(r'\{\s*(\d+),\s*"(\w+)",\s*(\d+),\s*(\d+),\s*(\d+),', body)
    return [(int(k), n, int(a), int(b), int(f)) for k, n, a, b, f in rows]


# ---- primitive types ----------------------------------------------------------------

class W:
    def __init__(self, flex):
        self.b = bytearray()
        self.flex = flex

    def i8(self, v): self.b += struct.pack(">b", v); return self
    def i16(self, v): self.b += struct.pack(">h", v); return self
    def i32(self, v): self.b += struct.pack(">i", v); return self
    def i64(self, v): self.b += struct.pack(">q", v); return self

    def uvarint(self, v):
        while True:
            if v < 0x80:
                self.b.append(v)
                return self
            self.b.append((v & 0x7F) | 0x80)
            v >>= 7

    def str(self, s):
        if s is None:
            return self.uvarint(0) if self.flex else self.i16(-1)
        e = s.encode()
        if self.flex:
            self.uvarint(len(e) + 1)
        else:
            self.i16(len(e))
        self.b += e
        return self

    def bytes(self, d):
        if d is None:
            return self.uvarint(0) if self.flex else self.i32(-1)
        if self.flex:
            self.uvarint(len(d) + 1)
        else:
            self.i32(len(d))
        self.b += d
        return self

    def array(self, n):
        if n is None:
            return self.uvarint(0) if self.flex else self.i32(-1)
        return self.uvarint(n + 1) if self.flex else self.i32(n)

    def tags(self):
        if self.flex:
            self.uvarint(0)
        return self


def header(key, ver, flex, corr=1, client="mkcorpus"):
    """Request header v1, or v2 (tagged fields) for a flexible version."""
    w = W(False)
    w.i16(key).i16(ver).i32(corr).str(client)
    if flex:
        w.uvarint(0)
    return bytes(w.b)


# ---- a RecordBatch v2 ---------------------------------------------------------------

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def varint(v):
    z = (v << 1) ^ (v >> 63)
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def record_batch(values, base_ts=1700000000000, pid=-1, epoch=-1, seq=-1):
    recs = bytearray()
    for i, v in enumerate(values):
        r = bytearray()
        r += b"\x00" + varint(i) + varint(i)       # attributes, timestamp delta, offset delta
        r += varint(-1)                           # key: null
        r += varint(len(v)) + v
        r += varint(0)                            # headers
        recs += varint(len(r)) + r
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", 0, n - 1, base_ts, base_ts + n - 1, pid, epoch, seq, n)
    after_crc += recs
    crc = crc32c(after_crc)
    body = struct.pack(">ibI", 0, 2, crc) + after_crc   # leader epoch, magic, crc
    return struct.pack(">qi", 0, len(body)) + body


BATCH = record_batch([b'{"n":%d}' % i for i in range(3)])


# ---- requests of the known APIs ----------------------------------------------------

def produce(v, flex, topics, acks=1, txn=None):
    w = W(flex)
    w.str(txn).i16(acks).i32(5000).array(len(topics))
    for name, parts in topics:
        w.str(name).array(len(parts))
        for idx, rec in parts:
            w.i32(idx).bytes(rec).tags()
        w.tags()
    return bytes(w.tags().b)


def fetch(v, flex, topics, max_bytes=1 << 20, max_wait=0, min_bytes=1):
    w = W(flex)
    w.i32(-1).i32(max_wait).i32(min_bytes).i32(max_bytes).i8(0)
    if v >= 7:
        w.i32(0).i32(-1)
    w.array(len(topics))
    for name, parts in topics:
        w.str(name).array(len(parts))
        for idx, off, pmax in parts:
            w.i32(idx)
            if v >= 9:
                w.i32(-1)
            w.i64(off)
            if v >= 5:
                w.i64(-1)
            w.i32(pmax).tags()
        w.tags()
    if v >= 7:
        w.array(0)
    if v >= 11:
        w.str("")
    return bytes(w.tags().b)


def list_offsets(v, flex, topics):
    w = W(flex)
    w.i32(-1)
    if v >= 2:
        w.i8(0)
    w.array(len(topics))
    for name, parts in topics:
        w.str(name).array(len(parts))
        for idx, ts in parts:
            w.i32(idx)
            if v >= 4:
                w.i32(-1)
            w.i64(ts).tags()
        w.tags()
    return bytes(w.tags().b)


def metadata(v, flex, names, auto=True):
    w = W(flex)
    if names is None:
        w.array(None)
    else:
        w.array(len(names))
        for n in names:
            if v >= 10:
                w.b += bytes(16)
            w.str(n).tags()
    if v >= 4:
        w.i8(1 if auto else 0)
    if v >= 8:
        w.i8(0).i8(0)
    return bytes(w.tags().b)


def api_versions(v, flex):
    w = W(flex)
    if v >= 3:
        w.str("mkcorpus").str("1.0").tags()
    return bytes(w.b)


def init_producer_id(v, flex, txn=None):
    w = W(flex)
    w.str(txn).i32(60000)
    return bytes(w.tags().b)


def seeds_for(key, v, flex):
    """[(name, body)] of valid requests for a known API, or None."""
    if key == 18:
        return [("", api_versions(v, flex))]
    if key == 3:
        out = [("t", metadata(v, flex, ["t"])), ("new", metadata(v, flex, ["new-topic"])),
               ("bad-name", metadata(v, flex, ["no/slash"]))]
        out.append(("all", metadata(v, flex, [] if v == 0 else None)))
        return out
    if key == 0:
        return [("acks1", produce(v, flex, [("t", [(0, BATCH)])])),
                ("acks-1", produce(v, flex, [("t", [(1, BATCH)])], acks=-1)),
                ("acks0", produce(v, flex, [("t", [(0, BATCH)])], acks=0)),
                ("corrupt", produce(v, flex, [("t", [(0, BATCH[:-1] + b"\x00")])])),
                ("new-topic", produce(v, flex, [("p-new", [(0, BATCH)])])),
                ("two", produce(v, flex, [("t", [(0, BATCH), (1, BATCH), (7, BATCH)])])),
                ("txn", produce(v, flex, [("t", [(0, BATCH)])], txn="tx"))]
    if key == 1:
        return [("from0", fetch(v, flex, [("t", [(0, 0, 1 << 20), (1, 0, 1 << 20)])])),
                ("mid", fetch(v, flex, [("t", [(0, 5, 100)])])),
                ("out-of-range", fetch(v, flex, [("t", [(0, 1 << 40, 100)])])),
                ("wait", fetch(v, flex, [("t", [(0, 1 << 20, 100)])], max_wait=500,
                                min_bytes=1 << 20)),
                ("unknown", fetch(v, flex, [("nope", [(0, 0, 100)])]))]
    if key == 2:
        return [("ends", list_offsets(v, flex, [("t", [(0, -1), (1, -2)])])),
                ("time", list_offsets(v, flex, [("t", [(0, 1700000000001), (1, 1)])])),
                ("max-ts", list_offsets(v, flex, [("t", [(0, -3)])]))]
    if key == 22:
        return [("", init_producer_id(v, flex)), ("txn", init_producer_id(v, flex, "tx"))]
    if key == 17:
        return [(m.lower(), W(flex).str(m).b) for m in ("SCRAM-SHA-256", "PLAIN", "GSSAPI")]
    if key == 36:
        return [("scram-first", W(flex).bytes(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL").tags().b),
                ("plain", W(flex).bytes(b"\0alice\0secret").tags().b),
                ("null", W(flex).bytes(None).tags().b)]
    return None


def bound_seeds(table):
    """Invariant 3: requests over the per-request bounds."""
    ver = {k: (lo, hi, f) for k, _, lo, hi, f in table}
    out = []
    if 0 in ver:
        v = ver[0][0]
        flex = v >= ver[0][2]
        out.append(("bound-produce-20k-partitions", 0, v, flex,
                    produce(v, flex, [("t", [(i, None) for i in range(20000)])])))
        out.append(("bound-produce-40-new-topics", 0, v, flex,
                    produce(v, flex, [("auto%d" % i, [(0, BATCH)]) for i in range(40)])))
        out.append(("bound-produce-30k-empty-topics", 0, v, flex,
                    produce(v, flex, [("m", []) for _ in range(30000)])))
    if 1 in ver:
        v = ver[1][0]
        flex = v >= ver[1][2]
        out.append(("bound-fetch-huge-max-bytes", 1, v, flex,
                    fetch(v, flex, [("t", [(0, 0, 0x7FFFFFFF), (1, 0, 0x7FFFFFFF)])],
                          max_bytes=0x7FFFFFFF)))
        out.append(("bound-fetch-20k-partitions", 1, v, flex,
                    fetch(v, flex, [("t", [(i % 2, 0, 1 << 20) for i in range(20000)])])))
    if 3 in ver:
        v = 1 if ver[3][0] <= 1 <= ver[3][1] else ver[3][0]
        flex = v >= ver[3][2]
        out.append(("bound-metadata-20k-topics", 3, v, flex,
                    metadata(v, flex, ["md%d" % i for i in range(20000)])))
        out.append(("bound-metadata-40-new-topics", 3, v, flex,
                    metadata(v, flex, ["mdnew%d" % i for i in range(40)])))
    if 2 in ver:
        v = ver[2][1]
        flex = v >= ver[2][2]
        out.append(("bound-listoffsets-200-by-time", 2, v, flex,
                    list_offsets(v, flex, [("t", [(i % 2, 1700000000000 + i)
                                                  for i in range(200)])])))
    if 18 in ver:
        for bad in (-1, -32768, 4, 99):
            out.append(("apiversions-v%d" % bad, 18, bad, bad >= 3, b""))
    return out


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def generate(out):
    table = api_table()
    req = os.path.join(out, "kafka_req")
    frm = os.path.join(out, "kafka_frame")
    os.makedirs(req, exist_ok=True)
    os.makedirs(frm, exist_ok=True)
    frames = []
    for key, name, lo, hi, fmin in table:                  # invariant 1
        for v in range(lo, hi + 1):
            flex = v >= fmin
            seeds = seeds_for(key, v, flex)
            if seeds is None:
                seeds = [("empty", b""), ("zeros", bytes(64))]
            for tag, body in seeds:
                fn = "%s-v%d%s" % (name.lower(), v, "-" + tag if tag else "")
                frame = header(key, v, flex) + body
                write(os.path.join(req, fn), frame)
                frames.append(frame)
    for fn, key, v, flex, body in bound_seeds(table):
        write(os.path.join(req, fn), header(key, v, flex) + body)
    write(os.path.join(req, "unknown-key"), header(999, 0, False))
    write(os.path.join(req, "short-header"), b"\x00\x12\x00")
    # Frame streams: every valid frame back to back at a few read sizes,
    # truncated streams, and sizes outside the bounds.
    def stream(fs):
        return b"".join(struct.pack(">i", len(f)) + f for f in fs)
    small = [f for f in frames if len(f) < 4096]
    write(os.path.join(frm, "all-1byte-reads"), b"\x00" + stream(small[:40]))
    write(os.path.join(frm, "all-big-reads"), b"\x7f" + stream(small[40:]))
    write(os.path.join(frm, "truncated"), b"\x03" + stream(small[:3])[:-5])
    write(os.path.join(frm, "size-negative"), b"\x01" + stream(small[:2]) + b"\x80\x00\x00\x00")
    write(os.path.join(frm, "size-too-small"), b"\x01" + struct.pack(">i", 7) + bytes(7))
    write(os.path.join(frm, "size-over-limit"), b"\x41" + struct.pack(">i", (64 << 10) + 1))
    write(os.path.join(frm, "size-at-limit"), b"\x45" + struct.pack(">i", 64 << 10) +
          header(18, 0, False) + bytes((64 << 10) - len(header(18, 0, False))))
    write(os.path.join(frm, "unknown-key"), b"\x02" + stream([header(999, 0, False)]))
    print("kafka_req: %d seeds, kafka_frame: %d seeds" % (len(os.listdir(req)),
                                                          len(os.listdir(frm))))


# ---- capture --------------------------------------------------------------------------

def capture(broker, listen_port, out):
    host, port = broker.rsplit(":", 1)
    os.makedirs(out, exist_ok=True)
    names = {k: n.lower() for k, n, *_ in api_table()}
    count = [0]
    lock = threading.Lock()

    def pipe_requests(src, dst):
        buf = b""
        while True:
            try:
                d = src.recv(65536)
                dst.sendall(d)
            except OSError:
                break
            if not d:
                break
            buf += d
            while len(buf) >= 4:
                n = struct.unpack(">i", buf[:4])[0]
                if len(buf) < 4 + n:
                    break
                frame, buf = buf[4:4 + n], buf[4 + n:]
                key, ver = struct.unpack(">hh", frame[:4])
                with lock:
                    count[0] += 1
                    fn = "client-%s-v%d-%d" % (names.get(key, "api%d" % key), ver, count[0])
                if len(frame) <= (1 << 20):
                    write(os.path.join(out, fn), frame)
        dst.close()

    def pipe(src, dst):
        while True:
            try:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
            except OSError:
                break
        dst.close()

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(listen_port)))
    ls.listen(16)
    while True:
        c, _ = ls.accept()
        b = socket.create_connection((host, int(port)))
        threading.Thread(target=pipe_requests, args=(c, b), daemon=True).start()
        threading.Thread(target=pipe, args=(b, c), daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--capture":
        capture(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 2:
        generate(sys.argv[1])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
