#!/usr/bin/env node
/*
 * tests/kafka/js/kafkajs.js - kafkajs (2.2.4, pinned in package.json)
 * against runneld's Kafka front. Run by tests/test_kafka_clients.c; by hand
 * (after scripts/install-deps.sh, which runs `npm ci` here):
 *
 *   node tests/kafka/js/kafkajs.js 127.0.0.1:9092 produce PREFIX
 *   node tests/kafka/js/kafkajs.js 127.0.0.1:9092 group-consume TOPIC N TAG
 *
 * produce: per codec kafkajs has without a native module (none, gzip, and
 *   snappy through kafkajs-snappy), topic PREFIX-<codec> auto-created by
 *   the producer's Metadata: N records in several sends with the keys,
 *   values, headers and timestamps of tests/kafka/common.py (the C test
 *   reads them back with kafka_python.py check); admin.fetchTopicOffsets
 *   must give low 0 and high N, fetchTopicOffsetsByTimestamp record j's
 *   offset for its timestamp.
 * group-consume: a consumer in a consumer group reads TOPIC from the
 *   beginning and must see "<TAG>-<i>" for i < N, in order (this needs the
 *   group coordinator: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
 *   OffsetFetch, OffsetCommit).
 * Exit status 0 when every check passed; a failure is printed on stderr.
 */
'use strict';
const path = require('path');
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } =
    require(path.join(__dirname, 'node_modules', 'kafkajs'));
const SnappyCodec = require(path.join(__dirname, 'node_modules', 'kafkajs-snappy'));
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;

const N = 300;
const TS0 = 1700000000000;
const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP,
                 snappy: CompressionTypes.Snappy };

/* The records of tests/kafka/common.py, byte for byte. */
function value(tag, i) {
    const pad = Buffer.from([...Array(256).keys()]).subarray(0, (i * 37) % 200);
    return Buffer.concat([Buffer.from(`${tag}-${i}-`), pad]);
}
function headers(i) {
    const h = { h: Buffer.from(`${i}`) };
    if (i % 3 === 0) h.bin = Buffer.from([i % 256, 0, 255]);
    return h;
}

function fail(msg) {
    process.stderr.write(`FAIL: ${msg}\n`);
    process.exit(1);
}

function client(bootstrap) {
    return new Kafka({ clientId: 'runnel-kafkajs-test', brokers: [bootstrap],
                       logLevel: logLevel.ERROR, retry: { retries: 5 } });
}

async function produce(bootstrap, prefix) {
    const kafka = client(bootstrap);
    const producer = kafka.producer({ allowAutoTopicCreation: true });
    const admin = kafka.admin();
    await producer.connect();
    await admin.connect();
    for (const [codec, compression] of Object.entries(CODECS)) {
        const topic = `${prefix}-${codec}`;
        const tag = `kjs-${codec}`;
        for (let start = 0; start < N; start += 50) {
            const messages = [];
            for (let i = start; i < start + 50; i++)
                messages.push({ key: Buffer.from(`k-${i}`), value: value(tag, i),
                                headers: headers(i), timestamp: `${TS0 + 1000 * i}`,
                                partition: 0 });
            const res = await producer.send({ topic, messages, compression, acks: -1 });
            if (res.length !== 1 || res[0].errorCode !== 0 || Number(res[0].baseOffset) !== start)
                fail(`${topic}: send at ${start} answered ${JSON.stringify(res)}`);
        }
        const offs = await admin.fetchTopicOffsets(topic);
        if (offs.length !== 1 || offs[0].partition !== 0 || offs[0].low !== '0' ||
            offs[0].high !== `${N}`)
            fail(`${topic}: fetchTopicOffsets ${JSON.stringify(offs)}`);
        const j = 123;
        for (const [t, want] of [[TS0 + 1000 * j, j], [TS0 + 1000 * j + 1, j + 1],
                                 [TS0 + 1000 * j - 1, j]]) {
            const r = await admin.fetchTopicOffsetsByTimestamp(topic, t);
            if (r.length !== 1 || r[0].offset !== `${want}`)
                fail(`${topic}: fetchTopicOffsetsByTimestamp(${t}) ${JSON.stringify(r)}, ` +
                     `wanted offset ${want}`);
        }
        console.log(`ok: kafkajs ${codec}: ${N} records produced, fetchTopicOffsets, ` +
                    `fetchTopicOffsetsByTimestamp`);
    }
    await admin.disconnect();
    await producer.disconnect();
}

async function groupConsume(bootstrap, topic, n, tag) {
    const kafka = client(bootstrap);
    const consumer = kafka.consumer({ groupId: `kafkajs-${topic}`, sessionTimeout: 10000,
                                      heartbeatInterval: 500, maxWaitTimeInMs: 200 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const got = [];
    let done;
    const finished = new Promise((resolve) => { done = resolve; });
    const timer = setTimeout(() => fail(`${topic}: read ${got.length} of ${n} in 30 s`), 30000);
    await consumer.run({
        eachMessage: async ({ message }) => {
            got.push(message.value.toString());
            if (got.length >= n) done();
        },
    });
    await finished;
    clearTimeout(timer);
    await consumer.disconnect();
    for (let i = 0; i < n; i++)
        if (got[i] !== `${tag}-${i}`) fail(`${topic}: record ${i} is ${got[i]}`);
    if (got.length !== n) fail(`${topic}: ${got.length} records, wanted ${n}`);
    console.log(`ok: kafkajs group consumer read ${n} records of ${topic} in order`);
}

async function main() {
    const [bootstrap, mode, ...rest] = process.argv.slice(2);
    if (mode === 'produce') await produce(bootstrap, rest[0]);
    else if (mode === 'group-consume') await groupConsume(bootstrap, rest[0], +rest[1], rest[2]);
    else fail(`unknown mode ${mode}`);
}

main().catch((e) => fail(e && e.stack ? e.stack : `${e}`));
