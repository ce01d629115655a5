#!/usr/bin/python3
"""tests/kafka/sasl.py - SASL and TLS against runneld's Kafka front with
confluent-kafka (librdkafka) and kafka-python (its own SCRAM client, an
independent implementation). Run by tests/test_kafka_sasl.c; by hand:

    sasl.py rdk BOOT PROTO MECH USER PASS CA TOPIC N [CERT KEY]
    sasl.py rdk-refused BOOT PROTO MECH USER PASS CA [CERT KEY]
    sasl.py kp BOOT USER PASS TOPIC N
    sasl.py kp-refused BOOT USER PASS
    sasl.py raw-v2 BOOT USER PASS

rdk: produce "m-<i>" for i < N to TOPIC (security.protocol PROTO, SASL
  mechanism MECH or "-" for none, CA "-" for none), wait for every delivery
  report, then read partition 0 from offset 0 and check the N values in
  order.
rdk-refused: the client must report an authentication or transport failure
  (within 10 s) and deliver nothing.
kp: the same as rdk with kafka-python over SASL_PLAINTEXT + SCRAM-SHA-256
  (its SaslHandshake v0 and raw tokens; it checks the server's signature).
kp-refused: kafka-python with these credentials cannot produce.
raw-v2: the wire by hand (a third SCRAM client, from hashlib and hmac):
  ApiVersions advertises SaslHandshake 0-1 and SaslAuthenticate 0-2;
  SaslHandshake v1 lists SCRAM-SHA-256 only (plaintext); SaslAuthenticate
  v2 (flexible) carries the exchange, the server's signature is checked,
  then Metadata v1 is answered. A second connection sends a wrong proof:
  error 58 with its message, then the broker closes the connection; a third
  sends Metadata after SaslHandshake, before authenticating: closed.
Exit status 0 when every check passed; a failure is printed on stderr.
"""
import sys
import time


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % msg)
    sys.exit(1)


def rdk_conf(boot, proto, mech, user, pw, ca, cert=None, key=None):
    c = {"bootstrap.servers": boot, "security.protocol": proto,
         "socket.timeout.ms": 10000, "message.timeout.ms": 15000}
    if mech != "-":
        c.update({"sasl.mechanisms": mech, "sasl.username": user, "sasl.password": pw})
    if ca != "-":
        c["ssl.ca.location"] = ca
    if cert:
        c["ssl.certificate.location"] = cert
        c["ssl.key.location"] = key
    return c


def rdk(args):
    from confluent_kafka import Consumer, Producer, TopicPartition
    boot, proto, mech, user, pw, ca, topic, n = args[:8]
    n = int(n)
    cert, key = (args[8], args[9]) if len(args) >= 10 else (None, None)
    conf = rdk_conf(boot, proto, mech, user, pw, ca, cert, key)
    errs = []
    p = Producer(dict(conf, error_cb=lambda e: errs.append(str(e))))
    delivered = []

    def dr(err, msg):
        if err:
            errs.append(str(err))
        else:
            delivered.append(msg.value())
    for i in range(n):
        p.produce(topic, value=b"m-%d" % i, callback=dr)
    p.flush(30)
    if len(delivered) != n:
        fail("%d of %d delivered; errors: %s" % (len(delivered), n, errs[:3]))
    c = Consumer(dict(conf, **{"group.id": "sasl-check", "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        got.append(m.value())
    c.close()
    want = [b"m-%d" % i for i in range(n)]
    if got != want:
        fail("read back %d records, first %r, want %d" % (len(got), got[:3], n))
    print("ok: confluent-kafka %s %s: %d records produced and read back" % (proto, mech, n))


def rdk_refused(args):
    from confluent_kafka import Producer
    boot, proto, mech, user, pw, ca = args[:6]
    cert, key = (args[6], args[7]) if len(args) >= 8 else (None, None)
    errs = []
    conf = rdk_conf(boot, proto, mech, user, pw, ca, cert, key)
    conf["message.timeout.ms"] = 8000
    p = Producer(dict(conf, error_cb=lambda e: errs.append(str(e))))
    delivered = []
    p.produce("refused", value=b"x", callback=lambda e, m: delivered.append(e is None))
    deadline = time.time() + 10
    while not errs and not delivered and time.time() < deadline:
        p.poll(0.1)
    p.poll(0.5)                       # a delivery racing the error would show here
    p.purge()
    if any(delivered):
        fail("a record was delivered")
    if not errs:
        fail("no error reported by the client")
    print("ok: confluent-kafka %s %s refused: %s" % (proto, mech, errs[0]))


def kp_conf(boot, user, pw):
    return dict(bootstrap_servers=boot, security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=user,
                sasl_plain_password=pw, api_version=(2, 0, 0))


def kp(args):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    boot, user, pw, topic, n = args[:5]
    n = int(n)
    p = KafkaProducer(max_block_ms=20000, **kp_conf(boot, user, pw))
    for i in range(n):
        p.send(topic, b"m-%d" % i).get(timeout=20)
    p.close()
    c = KafkaConsumer(consumer_timeout_ms=5000, **kp_conf(boot, user, pw))
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    got = [m.value for m in c]
    c.close()
    want = [b"m-%d" % i for i in range(n)]
    if got != want:
        fail("kafka-python read back %d records, first %r, want %d" % (len(got), got[:3], n))
    print("ok: kafka-python SASL_PLAINTEXT SCRAM-SHA-256: %d records produced and read back" % n)


def kp_refused(args):
    from kafka import KafkaProducer
    boot, user, pw = args[:3]
    try:
        p = KafkaProducer(max_block_ms=4000, **kp_conf(boot, user, pw))
        p.send("refused", b"x").get(timeout=4)
    except Exception as e:  # noqa: BLE001 - any failure is the refusal
        print("ok: kafka-python refused: %s" % type(e).__name__)
        return
    fail("kafka-python produced with credentials that should be refused")


# ---- the wire by hand ---------------------------------------------------------------

def _uvarint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Conn:
    def __init__(self, boot):
        import socket
        host, port = boot.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.corr = 0

    def call(self, key, ver, body, flex=False):
        import struct
        self.corr += 1
        hdr = struct.pack(">hhi", key, ver, self.corr) + struct.pack(">h", 4) + b"test"
        if flex:
            hdr += b"\x00"
        frame = hdr + body
        self.s.sendall(struct.pack(">i", len(frame)) + frame)
        n = struct.unpack(">i", self.recv(4))[0]
        resp = self.recv(n)
        if struct.unpack(">i", resp[:4])[0] != self.corr:
            fail("correlation id mismatch")
        return resp[5:] if flex else resp[4:]

    def recv(self, n):
        out = b""
        while len(out) < n:
            d = self.s.recv(n - len(out))
            if not d:
                raise EOFError("closed after %d of %d bytes" % (len(out), n))
            out += d
        return out


def _auth_v2(c, data):
    """SaslAuthenticate v2: (error, message, auth_bytes)."""
    import struct
    body = _uvarint(len(data) + 1) + data + b"\x00"
    r = c.call(36, 2, body, flex=True)
    err = struct.unpack(">h", r[:2])[0]
    p = 2
    n, p = _read_uvarint(r, p)
    msg = None if n == 0 else r[p:p + n - 1].decode()
    p += max(n - 1, 0)
    n, p = _read_uvarint(r, p)
    auth = r[p:p + n - 1]
    return err, msg, auth


def _read_uvarint(b, p):
    v = shift = 0
    while True:
        x = b[p]
        p += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, p


def raw_v2(args):
    import base64
    import hashlib
    import hmac
    import os
    import struct
    boot, user, pw = args[:3]
    c = Conn(boot)
    r = c.call(18, 0, b"")
    err, n = struct.unpack(">hi", r[:6])
    apis = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", r[6 + 6 * i:12 + 6 * i])
        apis[k] = (lo, hi)
    if err or apis.get(17) != (0, 1) or apis.get(36) != (0, 2):
        fail("ApiVersions: error %d, SaslHandshake %r, SaslAuthenticate %r" %
             (err, apis.get(17), apis.get(36)))

    def handshake(conn):
        r = conn.call(17, 1, struct.pack(">h", 13) + b"SCRAM-SHA-256")
        err, n = struct.unpack(">hi", r[:6])
        mechs, p = [], 6
        for _ in range(n):
            ln = struct.unpack(">h", r[p:p + 2])[0]
            mechs.append(r[p + 2:p + 2 + ln].decode())
            p += 2 + ln
        if err or mechs != ["SCRAM-SHA-256"]:
            fail("SaslHandshake: error %d, mechanisms %r" % (err, mechs))

    def exchange(conn, password):
        cnonce = base64.b64encode(os.urandom(18)).decode()
        bare = "n=%s,r=%s" % (user, cnonce)
        err, msg, sf = _auth_v2(conn, ("n,," + bare).encode())
        if err:
            fail("client-first answered %d %r" % (err, msg))
        attrs = dict(kv.split("=", 1) for kv in sf.decode().split(","))
        if not attrs["r"].startswith(cnonce) or len(attrs["r"]) <= len(cnonce):
            fail("server nonce %r does not extend ours" % attrs["r"])
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        ck = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored = hashlib.sha256(ck).digest()
        without = "c=biws,r=" + attrs["r"]
        am = ",".join([bare, sf.decode(), without]).encode()
        sig = hmac.new(stored, am, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(ck, sig))
        final = without + ",p=" + base64.b64encode(proof).decode()
        err, msg, sfinal = _auth_v2(conn, final.encode())
        sk = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        want = b"v=" + base64.b64encode(hmac.new(sk, am, hashlib.sha256).digest())
        return err, msg, sfinal, want

    handshake(c)
    err, msg, sfinal, want = exchange(c, pw)
    if err or sfinal != want:
        fail("client-final answered %d %r %r, want %r" % (err, msg, sfinal, want))
    r = c.call(3, 1, struct.pack(">i", -1))
    if struct.unpack(">i", r[:4])[0] != 1:
        fail("Metadata after authentication: %d brokers" % struct.unpack(">i", r[:4])[0])
    print("ok: SaslAuthenticate v2 by hand: authenticated, server signature checked")
    c2 = Conn(boot)
    handshake(c2)
    err, msg, sfinal, _ = exchange(c2, pw + "x")
    if err != 58 or not msg or "Authentication failed" not in msg:
        fail("a wrong proof answered %d %r" % (err, msg))
    try:
        c2.call(3, 1, struct.pack(">i", -1))
        fail("the connection stayed open after a failed authentication")
    except (EOFError, ConnectionError):
        pass
    print("ok: a wrong proof: error 58 %r, connection closed" % msg)
    c3 = Conn(boot)
    handshake(c3)
    try:
        c3.call(3, 1, struct.pack(">i", -1))
        fail("Metadata answered between SaslHandshake and SaslAuthenticate")
    except (EOFError, ConnectionError):
        pass
    print("ok: a request between SaslHandshake and SaslAuthenticate: connection closed")


def main():
    if len(sys.argv) < 2:
        fail("usage: sasl.py rdk|rdk-refused|kp|kp-refused ...")
    cmd, args = sys.argv[1], sys.argv[2:]
    {"rdk": rdk, "rdk-refused": rdk_refused, "kp": kp, "kp-refused": kp_refused,
     "raw-v2": raw_v2}[cmd](args)


if __name__ == "__main__":
    main()
