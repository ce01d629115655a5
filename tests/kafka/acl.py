#!/usr/bin/python3
"""tests/kafka/acl.py - confluent-kafka (librdkafka) as a principal logged in
with SASL SCRAM-SHA-256 against runneld's Kafka front with ACLs. Run by
tests/test_acl.c; by hand:

    /usr/bin/python3 tests/kafka/acl.py 127.0.0.1:9092 ALLOWED FORBIDDEN USER PASSWORD

The broker's ACLs let USER produce to and consume from topic ALLOWED
only, and consume in group k.reader (librdkafka asks for its coordinator
even when assigning); both topics exist. Checks: Metadata for every topic lists ALLOWED and
not FORBIDDEN; Metadata naming FORBIDDEN says TOPIC_AUTHORIZATION_FAILED;
a produce to ALLOWED is delivered; a produce to FORBIDDEN fails with
TOPIC_AUTHORIZATION_FAILED; reading ALLOWED back by assignment gives the
record; a Fetch of FORBIDDEN (written by hand) gets TOPIC_AUTHORIZATION_FAILED; a consumer
group (no group ACL) is refused with GROUP_AUTHORIZATION_FAILED.
Exit status 0 when every check passed; a failure is printed on stderr.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import fail, ok, raw_fetch  # noqa: E402


SASL = {}


def conf(bootstrap, **kw):
    c = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": SASL["user"],
         "sasl.password": SASL["password"]}
    c.update(kw)
    return c


def produce_one(bootstrap, topic):
    """The delivery error code of one record (None when delivered)."""
    p = Producer(conf(bootstrap, **{"message.timeout.ms": 10000, "enable.idempotence": False,
                                    "allow.auto.create.topics": False}))
    got = []
    p.produce(topic, b"acl-value", callback=lambda err, msg: got.append(err))
    p.flush(15)
    if not got:
        fail("no delivery report for %s" % topic)
    return None if got[0] is None else got[0].code()


def read_one(bootstrap, topic, group=None):
    """The first message (or error) reading topic partition 0 from offset 0."""
    c = Consumer(conf(bootstrap, **{"group.id": group or "k.reader", "enable.auto.commit": False,
                                    "auto.offset.reset": "earliest"}))
    if group:
        c.subscribe([topic])
    else:
        c.assign([TopicPartition(topic, 0, 0)])
    deadline = time.time() + 15
    try:
        while time.time() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            return m
        return None
    finally:
        c.close()


def main():
    bootstrap, allowed, forbidden = sys.argv[1], sys.argv[2], sys.argv[3]
    SASL["user"], SASL["password"] = sys.argv[4], sys.argv[5]
    login = (SASL["user"], SASL["password"])
    admin = Producer(conf(bootstrap))
    md = admin.list_topics(timeout=10)
    names = set(md.topics)
    if allowed not in names or forbidden in names:
        fail("Metadata lists %r: wanted %s and not %s" % (sorted(names), allowed, forbidden))
    ok("Metadata lists only the describable topic")
    md = admin.list_topics(topic=forbidden, timeout=10)
    t = md.topics.get(forbidden)
    if t is None or t.error is None or t.error.code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
        fail("Metadata of %s: %r, wanted TOPIC_AUTHORIZATION_FAILED" %
             (forbidden, t.error if t else None))
    ok("Metadata naming the forbidden topic: TOPIC_AUTHORIZATION_FAILED")
    err = produce_one(bootstrap, allowed)
    if err is not None:
        fail("produce to %s: error %s" % (allowed, err))
    ok("produce to the allowed topic delivered")
    err = produce_one(bootstrap, forbidden)
    if err != KafkaError.TOPIC_AUTHORIZATION_FAILED:
        fail("produce to %s: error %s, wanted TOPIC_AUTHORIZATION_FAILED" % (forbidden, err))
    ok("produce to the forbidden topic: TOPIC_AUTHORIZATION_FAILED")
    m = read_one(bootstrap, allowed)
    if m is None or m.error() is not None or m.value() != b"acl-value":
        fail("read %s: %r" % (allowed, m.error() if m is not None else None))
    ok("read the allowed topic back")
    # librdkafka waits quietly on a partition it may not read: a Fetch
    # written by hand shows the broker's answer.
    got = raw_fetch(bootstrap, forbidden, sasl=login)
    if len(got) != 1 or got[0][2] != KafkaError.TOPIC_AUTHORIZATION_FAILED or got[0][4]:
        fail("Fetch of %s: %r, wanted TOPIC_AUTHORIZATION_FAILED and no records" %
             (forbidden, got))
    got = raw_fetch(bootstrap, allowed, sasl=login)
    if len(got) != 1 or got[0][2] != 0 or not got[0][4]:
        fail("Fetch of %s: %r, wanted records" % (allowed, got))
    ok("Fetch of the forbidden topic: TOPIC_AUTHORIZATION_FAILED")
    m = read_one(bootstrap, allowed, group="no-such-right")
    if m is None or m.error() is None or \
            m.error().code() != KafkaError.GROUP_AUTHORIZATION_FAILED:
        fail("group read: %r, wanted GROUP_AUTHORIZATION_FAILED" %
             (m.error() if m is not None else "nothing"))
    ok("a consumer group without a group ACL: GROUP_AUTHORIZATION_FAILED")


if __name__ == "__main__":
    main()
