/*
 * tests/standalone/runnel_h.c — a librunnel user that includes nothing of
 * runnel but client/runnel.h and touches every type, constant and error code
 * the header defines. tests/test_client.c:test_header_stands_alone compiles
 * it (never links or runs it) against a copy of runnel.h alone, with
 * -Wall -Wextra -Werror, and checks that every rn_*_t the header names
 * appears here: a header that needed another project header, or a new
 * public type this file does not use, fails that test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/runnel.h"

/* Every error code, by the header's own table. */
static const struct { int code; const char *name, *msg; } codes[] = {
#define X(name, value, msg) {name, #name, msg},
    RN_ERRORS(X)
#undef X
};

static void on_delivery(void *arg, const rn_delivery_t *d)
{
    rn_producer_stats_t *seen = arg;
    if (d->rc == 0) seen->records++;
    else fprintf(stderr, "%s[%u]: %s (%s)\n", d->topic, d->queue, d->errmsg, rn_strerror(d->rc));
}

int standalone_use(const char *dir, const char *server);
int standalone_use(const char *dir, const char *server)
{
    char err[RN_ERRMSG_SIZE] = "";
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code >= RN_EBASE || strcmp(rn_strerror(codes[i].code), codes[i].msg) != 0)
            return -1;

    rn_client_opts_t co;
    rn_client_opts_default(&co);
    co.create = 1;
    rn_log_opts_t *lo = &co.log;
    rn_fsync_mode_t modes[] = {RN_FSYNC_ALWAYS, RN_FSYNC_GROUP, RN_FSYNC_INTERVAL,
                               RN_FSYNC_NEVER};
    lo->fsync = modes[3];
    rn_client_t *c = NULL;
    int rc = server ? rn_client_open_server(server, &co, &c, err)
                    : rn_client_open_data(dir, &co, &c, err);
    if (rc != 0) return rc;
    printf("%s remote=%d\n", rn_client_where(c), rn_client_is_remote(c));

    rn_meta_topic_t t;
    rn_meta_topic_t *topics = NULL;
    size_t n = 0;
    rc = rn_client_topic_create(c, "logs", 2, &t, err);
    if (rc == 0) rc = rn_client_topic_alter(c, "logs", 3, &t, err);
    if (rc == 0) rc = rn_client_topic_get(c, "logs", &t, err);
    if (rc == 0) rc = rn_client_topic_list(c, &topics, &n, err);
    free(topics);

    rn_client_topic_desc_t desc;
    if (rc == 0) rc = rn_client_topic_describe(c, "logs", &desc, err);
    if (rc == 0) {
        rn_client_queue_desc_t *q = &desc.queues[0];
        rn_meta_item_t *it = &q->items[q->nitems - 1];
        printf("%s q%u [%lld, %lld] item %u\n", desc.topic.name, q->queue,
               (long long)q->log_start, (long long)q->high_watermark, it->seq);
    }
    rn_client_topic_desc_free(&desc);

    int64_t start, hw, off;
    rn_datadir_pos_kind_t kinds[] = {RN_POS_EARLIEST, RN_POS_LATEST, RN_POS_OFFSET, RN_POS_TIME};
    if (rc == 0) rc = rn_client_queue_range(c, "logs", 0, &start, &hw, err);
    if (rc == 0) rc = rn_client_resolve(c, "logs", 0, kinds[0], 0, &off, err);
    rn_meta_item_t sealed, opened;
    if (rc == 0) rc = rn_client_queue_remap(c, "logs", 0, NULL, &sealed, &opened, err);
    rn_datadir_store_info_t *stores = NULL;
    if (rc == 0) rc = rn_client_stores(c, &stores, &n, err);
    if (rc == 0 && n > 0) printf("store %u at %s\n", stores[0].id, stores[0].path);
    free(stores);

    uint8_t key[] = {'k'}, value[] = {'v'};
    rn_header_t h = {.key = key, .key_len = 1, .value = value, .value_len = 1};
    rn_record_t r = {.timestamp = -1, .key = key, .key_len = 1, .value = value,
                     .value_len = 1, .headers = &h, .header_count = 1};
    rn_producer_opts_t po;
    rn_producer_opts_default(&po);
    po.codec = RN_BATCH_CODEC_LZ4 + RN_BATCH_CODEC_NONE;
    rn_acks_t acks[] = {RN_ACKS_DURABLE, RN_ACKS_WRITTEN};
    po.acks = acks[0];
    rn_delivery_fn cb = on_delivery;
    rn_producer_stats_t seen = {0}, st;
    rn_producer_t *p = NULL;
    if (rc == 0) rc = rn_producer_open(c, "logs", &po, &p, err);
    if (rc == 0) {
        uint32_t nq = rn_producer_queues(p);
        rc = rn_producer_send(p, RN_PRODUCER_ANY_QUEUE, &r, cb, &seen, err);
        if (rc == 0) rc = rn_producer_send(p, rn_client_partition(key, 1, nq), &r, NULL, NULL,
                                           err);
        if (rc == 0) rc = rn_producer_flush(p, err);
        rn_producer_stats(p, &st);
        int crc = rn_producer_close(p, err);
        if (rc == 0) rc = crc;
        printf("%llu %u\n", (unsigned long long)st.records, rn_murmur2(key, 1));
    }
    rn_client_test_hook = NULL;

    rn_client_consumer_opts_t ko = {.fetch_bytes = 1u << 20, .prefetch = 2, .skip_damaged = 0};
    rn_client_consumer_t *k = NULL;
    rn_consumer_batch_t b;
    if (rc == 0) rc = rn_client_consumer_open(c, &ko, &k, err);
    if (rc == 0) rc = rn_client_consumer_assign(k, "logs", 0, 0, err);
    if (rc == 0) rc = rn_client_consumer_set_end(k, "logs", 0, -1, err);
    if (rc == 0) rc = rn_client_consumer_seek(k, "logs", 0, 0, err);
    if (rc == 0) rc = rn_client_consumer_seek_time(k, "logs", 0, 0, err);
    while (rc == 0 && rn_client_consumer_poll(k, &b, 100, err) == 1)
        for (uint32_t i = 0; i < b.count; i++)
            printf("%s %u %lld %.*s\n", b.topic, b.queue, (long long)b.records[i].offset,
                   (int)b.records[i].value_len, (const char *)b.records[i].value);
    if (rc == 0) rc = rn_client_consumer_position(k, "logs", 0, &off, err);
    if (rc == 0) rc = rn_client_consumer_watermarks(k, "logs", 0, &start, &hw, err);
    if (rc == 0) rc = rn_client_consumer_commit(k, "g", err);
    uint64_t skipped_offsets, skipped_ranges;
    if (k) rn_client_consumer_skipped(k, &skipped_offsets, &skipped_ranges);
    rn_client_consumer_close(k);

    rn_meta_group_t *groups = NULL;
    rn_meta_offset_t *offs = NULL;
    rn_meta_offset_t commit = {.queue = 0, .offset = 0};
    snprintf(commit.topic, sizeof commit.topic, "logs");
    rn_group_target_kind_t tk[] = {RN_TARGET_EARLIEST, RN_TARGET_LATEST, RN_TARGET_OFFSET,
                                   RN_TARGET_TIME, RN_TARGET_CHECKPOINT};
    rn_group_target_t to = {.kind = tk[0]};
    rn_group_change_t *changes = NULL;
    rn_meta_checkpoint_t cp, *cps = NULL;
    uint32_t queues[] = {0};
    int64_t offsets[1];
    if (rc == 0) rc = rn_client_group_list(c, &groups, &n, err);
    if (rc == 0) rc = rn_client_group_offsets(c, "g", NULL, &offs, &n, err);
    if (rc == 0) rc = rn_client_group_commit(c, "g", &commit, 1, err);
    if (rc == 0) rc = rn_client_group_reset(c, "g", "logs", &to, &changes, &n, err);
    if (rc == 0) rc = rn_client_checkpoint_create(c, "g", "cp", &cp, err);
    if (rc == 0) rc = rn_client_checkpoint_list(c, "g", &cps, &n, err);
    if (rc == 0) rc = rn_client_start_offsets(c, "logs", queues, 1, "g", &to, offsets, err);
    if (rc == 0) rc = rn_client_checkpoint_drop(c, "g", cp.name, err);
    if (groups && changes && offs && cps)
        printf("%s %s %lld->%lld %s\n", groups[0].name, offs[0].topic,
               (long long)changes[0].before, (long long)changes[0].after, cps[0].group);
    free(groups);
    free(offs);
    free(changes);
    free(cps);

    rn_client_pipeline_t *pl = NULL;
    if (rc == 0)
        rc = rn_client_pipeline_create(c, "CREATE PIPELINE p AS INSERT INTO out SELECT * FROM logs",
                                       err);
    if (rc == 0) rc = rn_client_pipeline_status(c, NULL, &pl, &n, err);
    if (rc == 0 && n > 0) {
        rn_etl_status_t *s = &pl[0].s;
        printf("%s %s lag %lld of %d\n", s->name, pl[0].state, (long long)s->lag[0],
               RN_ETL_MAX_QUEUES);
    }
    free(pl);
    if (rc == 0) rc = rn_client_pipeline_pause(c, "p", 1, err);
    if (rc == 0) rc = rn_client_pipeline_drop(c, "p", err);

    rn_meta_acl_t acl = {.principal = "alice", .resource = "topic", .pattern = "prefixed",
                         .name = "app.", .operation = "produce"}, *acls = NULL;
    if (rc == 0) rc = rn_client_acl_add(c, &acl, err);
    if (rc == 0) rc = rn_client_acl_list(c, &acls, &n, err);
    if (rc == 0 && n > 0) printf("%s %d\n", acls[0].principal, RN_META_ACL_PRINCIPAL_MAX);
    free(acls);
    if (rc == 0) rc = rn_client_acl_remove(c, &acl, err);

    char name[RN_META_TOPIC_NAME_MAX + RN_META_NAME_MAX + RN_META_PATH_MAX];
    snprintf(name, sizeof name, "%s", err);
    int crc = rn_client_close(c);
    return rc != 0 ? rc : crc;
}
