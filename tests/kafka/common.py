"""tests/kafka/common.py - what the Kafka client scripts share: the records
each one writes and the checks of what it reads back.

Record i of a round trip: key b"k-<i>", value b"<tag>-<i>-" padded with
bytes 0..255 (so every byte value goes through), one header
("h", b"<i>") plus ("bin", bytes([i % 256])) on every third record, and the
timestamp TS0 + 1000 * i (milliseconds). Records are produced in a few
batches so that a middle offset falls inside a batch.
"""
import sys

TS0 = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def value(tag, i):
    return b"%s-%d-" % (tag.encode(), i) + bytes(range(256))[: (i * 37) % 200]


def key(i):
    return b"k-%d" % i


def headers(i):
    h = [("h", b"%d" % i)]
    if i % 3 == 0:
        h.append(("bin", bytes([i % 256, 0, 255])))
    return h


def ts(i):
    return TS0 + 1000 * i


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check_record(where, i, off, k, v, hdrs, t, tag, want_headers=True):
    """One record read back: offset i, its key, value, headers, timestamp."""
    if off != i:
        fail("%s: record at offset %d, wanted %d" % (where, off, i))
    if k != key(i):
        fail("%s: offset %d key %r, wanted %r" % (where, i, k, key(i)))
    if v != value(tag, i):
        fail("%s: offset %d value %r, wanted %r" % (where, i, v, value(tag, i)))
    if want_headers:
        got = [(hk, bytes(hv) if hv is not None else None) for hk, hv in (hdrs or [])]
        if got != headers(i):
            fail("%s: offset %d headers %r, wanted %r" % (where, i, got, headers(i)))
    if t != ts(i):
        fail("%s: offset %d timestamp %d, wanted %d" % (where, i, t, ts(i)))


def ok(msg):
    print("ok: " + msg, flush=True)


def _frame_call(s, readn, api, ver, corr, body):
    """One request of the Kafka wire (non-flexible header) and its answer
    (after the correlation id)."""
    import struct
    cid = b"raw"
    head = struct.pack(">hhih", api, ver, corr, len(cid)) + cid
    s.sendall(struct.pack(">i", len(head) + len(body)) + head + body)
    size = struct.unpack(">i", readn(4))[0]
    return readn(size)[4:]


def scram_login(s, readn, user, password):
    """SASL SCRAM-SHA-256 on socket s (SaslHandshake v1, SaslAuthenticate
    v0), written here from RFC 5802 and 7677; fails the test on any error."""
    import base64
    import hashlib
    import hmac
    import os
    import struct
    r = _frame_call(s, readn, 17, 1, 101, struct.pack(">h", 13) + b"SCRAM-SHA-256")
    if struct.unpack(">h", r[:2])[0] != 0:
        fail("SaslHandshake: error %d" % struct.unpack(">h", r[:2])[0])

    def auth(data, corr):
        r = _frame_call(s, readn, 36, 0, corr, struct.pack(">i", len(data)) + data)
        err, ml = struct.unpack(">hh", r[:4])
        p = 4 + max(ml, 0)
        n = struct.unpack(">i", r[p:p + 4])[0]
        if err:
            fail("SaslAuthenticate: error %d %r" % (err, r[4:4 + max(ml, 0)]))
        return r[p + 4:p + 4 + n]

    cnonce = base64.b64encode(os.urandom(18)).decode()
    bare = "n=%s,r=%s" % (user, cnonce)
    sf = auth(("n,," + bare).encode(), 102)
    attrs = dict(kv.split("=", 1) for kv in sf.decode().split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    ck = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    without = "c=biws,r=" + attrs["r"]
    am = ",".join([bare, sf.decode(), without]).encode()
    sig = hmac.new(hashlib.sha256(ck).digest(), am, hashlib.sha256).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
    auth((without + ",p=" + proof).encode(), 103)


def raw_fetch(bootstrap, topic, partition=0, offset=0, max_bytes=1 << 20,
              partition_max_bytes=1 << 20, max_wait_ms=0, parts=None, min_bytes=0, sasl=None):
    """One Fetch v4 on a fresh connection, written and parsed here (no
    client library): [(topic, partition, error, high watermark, records
    bytes)] for parts = [(topic, partition, offset, partition_max_bytes)]
    (default: the one partition given). sasl = (user, password): log in
    with SCRAM-SHA-256 first."""
    import socket
    import struct
    host, port = bootstrap.rsplit(":", 1)
    if parts is None:
        parts = [(topic, partition, offset, partition_max_bytes)]
    by_topic = {}
    for t, p, o, m in parts:
        by_topic.setdefault(t, []).append((p, o, m))
    body = struct.pack(">iiiib", -1, max_wait_ms, min_bytes, max_bytes, 0)
    body += struct.pack(">i", len(by_topic))
    for t, ps in by_topic.items():
        body += struct.pack(">h", len(t)) + t.encode() + struct.pack(">i", len(ps))
        for p, o, m in ps:
            body += struct.pack(">iqi", p, o, m)
    cid = b"raw-fetch"
    head = struct.pack(">hhih", 1, 4, 7, len(cid)) + cid
    s = socket.create_connection((host, int(port)), timeout=10)

    def readn(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                fail("raw fetch: connection closed after %d of %d bytes" % (len(b), n))
            b += c
        return b

    if sasl:
        scram_login(s, readn, *sasl)
    s.sendall(struct.pack(">i", len(head) + len(body)) + head + body)

    size = struct.unpack(">i", readn(4))[0]
    r = readn(size)
    s.close()
    pos = 8                                    # correlation id, throttle
    out = []
    (nt,) = struct.unpack_from(">i", r, pos); pos += 4
    for _ in range(nt):
        (tl,) = struct.unpack_from(">h", r, pos); pos += 2
        t = r[pos:pos + tl].decode(); pos += tl
        (np,) = struct.unpack_from(">i", r, pos); pos += 4
        for _ in range(np):
            p, err, hwm, _lso = struct.unpack_from(">ihqq", r, pos); pos += 22
            (na,) = struct.unpack_from(">i", r, pos); pos += 4 + 16 * max(na, 0)
            (rl,) = struct.unpack_from(">i", r, pos); pos += 4
            rec = r[pos:pos + max(rl, 0)]; pos += max(rl, 0)
            out.append((t, p, err, hwm, rec))
    return out


def batches(records):
    """(base offset, last offset delta, attributes, size) of each whole batch."""
    import struct
    out, pos = [], 0
    while pos + 61 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        if pos + 12 + length > len(records):
            break
        (attrs,) = struct.unpack_from(">h", records, pos + 21)
        (delta,) = struct.unpack_from(">i", records, pos + 23)
        out.append((base, delta, attrs, 12 + length))
        pos += 12 + length
    return out


CODEC_ID = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def check_codec(bootstrap, topic, codec, sent=None):
    """The stored batches of the topic's queue 0 carry the codec's id in
    their attributes: the client really compressed (and the broker stored
    the batches as received)."""
    # Acknowledged with acks=1 is not yet visible: the high watermark is the
    # durable end, so wait (long-poll) for the first bytes.
    [(_, _, err, _, rec)] = raw_fetch(bootstrap, topic, max_wait_ms=5000, min_bytes=1)
    if sent is not None and sent != codec:
        # The client sends this codec uncompressed on this broker (see
        # rdkafka_compresses): every batch must say so.
        print("note: %s: the client sends %s batches as %s here" % (topic, codec, sent),
              flush=True)
        codec = sent
    bs = batches(rec)
    if err or not bs:
        fail("%s: raw fetch error %d, %d batches" % (topic, err, len(bs)))
    # librdkafka sends a batch uncompressed when compressing it would not
    # make it smaller (a batch of one short record): none is allowed too.
    mine = [b for b in bs if b[2] & 7 == CODEC_ID[codec]]
    bad = [b for b in bs if b[2] & 7 not in (0, CODEC_ID[codec])]
    if bad or not mine:
        fail("%s: of %d batches %d are %s, %d another codec (attributes %s)" %
             (topic, len(bs), len(mine), codec, len(bad), [hex(b[2]) for b in bs[:8]]))


def api_versions(bootstrap):
    """{api key: (min, max)} from one ApiVersions v0 request, parsed here."""
    import socket
    import struct
    host, port = bootstrap.rsplit(":", 1)
    cid = b"raw-apiversions"
    head = struct.pack(">hhih", 18, 0, 1, len(cid)) + cid
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(struct.pack(">i", len(head)) + head)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
        c = s.recv(65536)
        if not c:
            fail("ApiVersions: connection closed")
        buf += c
    s.close()
    err, n = struct.unpack_from(">hi", buf, 8)
    if err:
        fail("ApiVersions: error %d" % err)
    return {k: (lo, hi) for k, lo, hi in
            (struct.unpack_from(">hhh", buf, 14 + 6 * i) for i in range(n))}


def rdkafka_compresses(bootstrap, codec):
    """Whether librdkafka 2.0 compresses with codec against this broker: it
    enables lz4 only when the broker lists FindCoordinator v0 (its "LZ4"
    feature stands for brokers of Kafka 0.8.2 on), zstd only with Produce
    v7 and Fetch v10, and any codec only when Produce is listed from v0."""
    v = api_versions(bootstrap)
    if v.get(0, (1, 0))[0] != 0:
        return codec == "none"
    if codec == "lz4":
        lo, hi = v.get(10, (1, -1))
        return lo <= 0 <= hi
    return True
