#!/usr/bin/python3
"""tests/kafka/sasl.py - SASL and TLS against runneld's Kafka front with
confluent-kafka (librdkafka) and kafka-python (its own SCRAM client, an
independent implementation). Run by tests/test_kafka_sasl.c; by hand:

    sasl.py rdk BOOT PROTO MECH USER PASS CA TOPIC N [CERT KEY]
    sasl.py rdk-refused BOOT PROTO MECH USER PASS CA [CERT KEY]
    sasl.py kp BOOT USER PASS TOPIC N
    sasl.py kp-refused BOOT USER PASS

rdk: produce "m-<i>" for i < N to TOPIC (security.protocol PROTO, SASL
  mechanism MECH or "-" for none, CA "-" for none), wait for every delivery
  report, then read partition 0 from offset 0 and check the N values in
  order.
rdk-refused: one produce must not be delivered within 10 s, and the client
  must report an authentication or transport failure.
kp: the same as rdk with kafka-python over SASL_PLAINTEXT + SCRAM-SHA-256
  (its SaslHandshake v0 and raw tokens; it checks the server's signature).
kp-refused: kafka-python with these credentials cannot produce.
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
    p.flush(10)
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
        p = KafkaProducer(max_block_ms=6000, **kp_conf(boot, user, pw))
        p.send("refused", b"x").get(timeout=6)
    except Exception as e:  # noqa: BLE001 - any failure is the refusal
        print("ok: kafka-python refused: %s" % type(e).__name__)
        return
    fail("kafka-python produced with credentials that should be refused")


def main():
    if len(sys.argv) < 2:
        fail("usage: sasl.py rdk|rdk-refused|kp|kp-refused ...")
    cmd, args = sys.argv[1], sys.argv[2:]
    {"rdk": rdk, "rdk-refused": rdk_refused, "kp": kp, "kp-refused": kp_refused}[cmd](args)


if __name__ == "__main__":
    main()
