/*
 * bench_net.h — what bench_net.c shares with bench_kafka.c: the flags of the
 * broker benchmarks, a runneld of our own, and the gRPC produce, embedded
 * baseline and consume runs, so the Kafka front is measured beside them in
 * the same run.
 */
#ifndef RN_BENCH_NET_H
#define RN_BENCH_NET_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench/bench.h"
#include "client/runnel.h"

typedef struct net_cfg {
    const char *cmd;
    const char *server, *topic, *dir;
    uint64_t    records, size, batch_bytes, producers, consumers, queues, linger_ms;
    uint64_t    rate, seconds, seed;
    uint64_t    rounds;                   /* produce-batches: counted rounds */
    const char *fsync;                    /* --fsync for a runneld of our own */
    int         json, no_baseline, lz4, acks_written;
    int         kafka;                    /* start runneld with --kafka-listen */
} net_cfg_t;

typedef struct broker {
    pid_t pid;
    char  dir[PATH_MAX];
    char  addr[64];
    char  kafka[64];                      /* HOST:PORT of its Kafka listener, or "" */
} broker_t;

typedef struct cpu_mark { uint64_t self, broker; } cpu_mark_t;

/* Flags of produce/consume/e2e/kafka-produce/kafka-consume into *cfg. */
int  bench_net_parse(const char *cmd, int argc, char **argv, void *cfg);
/* runneld on a fresh directory and a free loopback port (cfg->fsync,
 * cfg->kafka); stop: SIGTERM, 0 when it exited 0, directory removed. */
int  bench_broker_start(const net_cfg_t *cfg, broker_t *b);
int  bench_broker_stop(const net_cfg_t *cfg, broker_t *b);
/* The pool of record values (bench_fill_value), BENCH_NET_POOL of them. */
#define BENCH_NET_POOL 1024
uint8_t *bench_net_values(const net_cfg_t *cfg);
/* cfg->topic, created with cfg->queues when missing. */
int  bench_net_topic(const net_cfg_t *cfg, rn_client_t *c, uint32_t *queues);
int  bench_net_open(const net_cfg_t *cfg, const char *addr, size_t n, rn_client_t **v);
void bench_net_close(rn_client_t **v, size_t n);
/* records from cfg->producers threads over clients; *ns first send to last flush. */
int  bench_net_produce_run(const net_cfg_t *cfg, rn_client_t **clients, uint64_t records,
                           const uint8_t *values, uint64_t *ns);
/* The same on a fresh embedded data directory. */
int  bench_net_baseline(const net_cfg_t *cfg, const uint8_t *values, uint64_t *ns);
/* Read cfg->topic from earliest to its end over gRPC with cfg->consumers
 * threads (clients cs, at least cfg->consumers); records, value bytes, ns. */
int  bench_net_consume_run(const net_cfg_t *cfg, rn_client_t **cs, uint32_t queues,
                           uint64_t *records, uint64_t *bytes, uint64_t *ns);
cpu_mark_t bench_cpu_now(void);
void bench_cpu_report(const net_cfg_t *cfg, bench_json_t *j, cpu_mark_t m, uint64_t records);
double bench_per_s(uint64_t n, uint64_t ns);
/* Run fn against cfg->server, or against a runneld of our own. */
int  bench_with_broker(const net_cfg_t *cfg, int (*fn)(const net_cfg_t *, const char *));
extern pid_t bench_broker_pid;          /* runneld started by the bench; 0: none */

#endif
