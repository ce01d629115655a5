/*
 * test_server_admin.c — runneld's topic, queue, store, offset, group and
 * checkpoint RPCs over loopback gRPC, each compared with what the core says
 * (the broker calls the same functions as the embedded commands), with their
 * error statuses; DeleteTopic and a topic recreated after it (offset 0, the
 * idempotent producer state reset); an unknown method answers UNIMPLEMENTED.
 */
#include "tests/test_server.h"

/* A unary call that must succeed; returns the response (caller frees). */
static ProtobufCMessage *call_ok(srv_t *s, const char *method, const ProtobufCMessage *req,
                                 const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st;
    int rc = rn_rpc_call(s->rpc, method, req, desc, &m, CALL_MS, &st, err);
    if (rc != 0) fail_msg("%s: %s (status %d)", method, err, st);
    return m;
}

/* A unary call that must fail with status want; err receives the message. */
static void call_fail(srv_t *s, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *desc, int want, char *err)
{
    ProtobufCMessage *m = NULL;
    int st = -1;
    int rc = rn_rpc_call(s->rpc, method, req, desc, &m, CALL_MS, &st, err);
    assert_true(rc < 0);
    assert_null(m);
    if (st != want) fail_msg("%s: status %d, wanted %d (%s)", method, st, want, err);
}

static void fill(srv_t *s, const char *topic, uint32_t q, int n, int first)
{
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, n, first, -1, -1, -1);
    assert_int_equal(produce(s, topic, q, &b, 1, 0, NULL, NULL, NULL), 0);
    batch_free(&b);
}

static void test_topics(void **state)
{
    srv_t *s = *state;
    char err[RN_ERRMSG_SIZE];
    create_topic(s, "alpha", 3);
    create_topic(s, "beta", 1);
    Runnel__V1__CreateTopicRequest cr = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
    cr.name = "alpha";
    cr.queues = 1;
    call_fail(s, RN_RPC_METHOD("CreateTopic"), &cr.base, &runnel__v1__topic_info__descriptor, 6,
              err);
    cr.name = "bad/name";
    call_fail(s, RN_RPC_METHOD("CreateTopic"), &cr.base, &runnel__v1__topic_info__descriptor, 3,
              err);
    /* queues 0 means 1 */
    cr.name = "gamma";
    cr.queues = 0;
    Runnel__V1__TopicInfo *ti = (void *)call_ok(s, RN_RPC_METHOD("CreateTopic"), &cr.base,
                                                &runnel__v1__topic_info__descriptor);
    assert_int_equal(ti->queue_count, 1);
    assert_true(ti->created_ms > 0);
    protobuf_c_message_free_unpacked(&ti->base, NULL);

    Runnel__V1__ListTopicsRequest lr = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    Runnel__V1__ListTopicsResponse *l = (void *)call_ok(
        s, RN_RPC_METHOD("ListTopics"), &lr.base, &runnel__v1__list_topics_response__descriptor);
    assert_int_equal(l->n_topics, 3);
    assert_string_equal(l->topics[0]->name, "alpha");
    assert_int_equal(l->topics[0]->queue_count, 3);
    assert_string_equal(l->topics[1]->name, "beta");
    protobuf_c_message_free_unpacked(&l->base, NULL);

    fill(s, "alpha", 2, 30, 0);
    Runnel__V1__DescribeTopicRequest dr = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
    dr.name = "alpha";
    ti = (void *)call_ok(s, RN_RPC_METHOD("DescribeTopic"), &dr.base,
                         &runnel__v1__topic_info__descriptor);
    assert_int_equal(ti->n_queues, 3);
    assert_int_equal(ti->queues[2]->queue, 2);
    assert_int_equal(ti->queues[2]->high_watermark, 30);
    assert_int_equal(ti->queues[2]->log_start_offset, 0);
    assert_int_equal(ti->queues[2]->batches, 1);
    assert_int_equal(ti->queues[2]->n_items, 1);
    assert_int_equal(ti->queues[2]->items[0]->physical_end, -1);
    assert_int_equal(ti->queues[0]->high_watermark, 0);
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    dr.name = "nope";
    call_fail(s, RN_RPC_METHOD("DescribeTopic"), &dr.base, &runnel__v1__topic_info__descriptor, 5,
              err);
    assert_non_null(strstr(err, "unknown topic 'nope'"));

    Runnel__V1__AlterTopicRequest ar = RUNNEL__V1__ALTER_TOPIC_REQUEST__INIT;
    ar.name = "beta";
    ar.queues = 4;
    ti = (void *)call_ok(s, RN_RPC_METHOD("AlterTopic"), &ar.base,
                         &runnel__v1__topic_info__descriptor);
    assert_int_equal(ti->queue_count, 4);
    assert_int_equal(ti->n_queues, 4);
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    fill(s, "beta", 3, 5, 0);                  /* a new queue takes records */
    assert_int_equal(hwm_of(s, "beta", 3), 5);
    ar.queues = 2;
    call_fail(s, RN_RPC_METHOD("AlterTopic"), &ar.base, &runnel__v1__topic_info__descriptor, 3,
              err);
    assert_non_null(strstr(err, "4"));
}

static void test_remap_and_stores(void **state)
{
    srv_t *s = *state;
    char err[RN_ERRMSG_SIZE];
    create_topic(s, "moving", 1);
    fill(s, "moving", 0, 20, 0);
    Runnel__V1__RemapQueueRequest rr = RUNNEL__V1__REMAP_QUEUE_REQUEST__INIT;
    rr.topic = "moving";
    rr.queue = 0;
    rr.store_path = "stores/second";
    Runnel__V1__TopicInfo *ti = (void *)call_ok(s, RN_RPC_METHOD("RemapQueue"), &rr.base,
                                                &runnel__v1__topic_info__descriptor);
    assert_int_equal(ti->n_queues, 1);
    assert_int_equal(ti->queues[0]->n_items, 2);
    assert_int_equal(ti->queues[0]->items[0]->physical_end, 20);
    assert_int_equal(ti->queues[0]->items[1]->logical_start, 20);
    assert_int_equal(ti->queues[0]->items[1]->physical_end, -1);
    assert_int_not_equal(ti->queues[0]->items[1]->store_id, ti->queues[0]->items[0]->store_id);
    protobuf_c_message_free_unpacked(&ti->base, NULL);
    /* Offsets go on densely across the boundary. */
    fill(s, "moving", 0, 10, 20);
    fetch_t f;
    assert_int_equal(fetch(s, "moving", 0, 0, 0, 0, &f), 0);
    assert_int_equal(check_records(&f, 0), 30);
    fetch_free(&f);
    Runnel__V1__ListStoresRequest lr = RUNNEL__V1__LIST_STORES_REQUEST__INIT;
    Runnel__V1__ListStoresResponse *ls = (void *)call_ok(
        s, RN_RPC_METHOD("ListStores"), &lr.base, &runnel__v1__list_stores_response__descriptor);
    assert_int_equal(ls->n_stores, 2);
    assert_int_equal(ls->stores[0]->id, 0);
    assert_true(ls->stores[0]->bytes > 0);
    assert_string_equal(ls->stores[1]->path, "stores/second");
    protobuf_c_message_free_unpacked(&ls->base, NULL);
    rr.topic = "nope";
    call_fail(s, RN_RPC_METHOD("RemapQueue"), &rr.base, &runnel__v1__topic_info__descriptor, 5,
              err);
    /* A store path outside --store-root (here the data directory) is refused;
     * tests/test_confine.c tries every form. */
    rr.topic = "moving";
    rr.store_path = "/proc/no-such-dir/store";
    call_fail(s, RN_RPC_METHOD("RemapQueue"), &rr.base, &runnel__v1__topic_info__descriptor, 7,
              err);
    assert_non_null(strstr(err, "store_path"));
    assert_int_equal(hwm_of(s, "moving", 0), 30);
}

static void test_list_offsets(void **state)
{
    srv_t *s = *state;
    char err[RN_ERRMSG_SIZE];
    create_topic(s, "times", 1);
    fill(s, "times", 0, 50, 0);          /* timestamps 1700000000000 + 0..49 */
    Runnel__V1__ListOffsetsRequest r = RUNNEL__V1__LIST_OFFSETS_REQUEST__INIT;
    r.topic = "times";
    r.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_EARLIEST;
    r.earliest = 1;
    Runnel__V1__ListOffsetsResponse *o = (void *)call_ok(
        s, RN_RPC_METHOD("ListOffsets"), &r.base, &runnel__v1__list_offsets_response__descriptor);
    assert_int_equal(o->offset, 0);
    assert_int_equal(o->high_watermark, 50);
    protobuf_c_message_free_unpacked(&o->base, NULL);
    r.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_TIMESTAMP_MS;
    r.timestamp_ms = 1700000000000 + 17;
    o = (void *)call_ok(s, RN_RPC_METHOD("ListOffsets"), &r.base,
                        &runnel__v1__list_offsets_response__descriptor);
    assert_int_equal(o->offset, 17);
    protobuf_c_message_free_unpacked(&o->base, NULL);
    r.timestamp_ms = 1800000000000;
    o = (void *)call_ok(s, RN_RPC_METHOD("ListOffsets"), &r.base,
                        &runnel__v1__list_offsets_response__descriptor);
    assert_int_equal(o->offset, 50);
    protobuf_c_message_free_unpacked(&o->base, NULL);
    r.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC__NOT_SET;
    call_fail(s, RN_RPC_METHOD("ListOffsets"), &r.base,
              &runnel__v1__list_offsets_response__descriptor, 3, err);
    r.spec_case = RUNNEL__V1__LIST_OFFSETS_REQUEST__SPEC_LATEST;
    r.queue = 5;
    call_fail(s, RN_RPC_METHOD("ListOffsets"), &r.base,
              &runnel__v1__list_offsets_response__descriptor, 5, err);
}

/* Offsets of group g on topic t (queue order), into v[0..n). */
static size_t group_offsets(srv_t *s, const char *g, const char *t, int64_t *v, size_t max)
{
    Runnel__V1__FetchOffsetsRequest r = RUNNEL__V1__FETCH_OFFSETS_REQUEST__INIT;
    r.group = (char *)g;
    r.topic = (char *)t;
    Runnel__V1__FetchOffsetsResponse *o = (void *)call_ok(
        s, RN_RPC_METHOD("FetchOffsets"), &r.base, &runnel__v1__fetch_offsets_response__descriptor);
    assert_string_equal(o->group, g);
    size_t n = o->n_offsets;
    assert_true(n <= max);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(o->offsets[i]->topic, t);
        assert_int_equal(o->offsets[i]->queue, i);
        v[i] = o->offsets[i]->offset;
    }
    protobuf_c_message_free_unpacked(&o->base, NULL);
    return n;
}

static void commit(srv_t *s, const char *g, const char *t, int64_t o0, int64_t o1, int want,
                   char *err)
{
    Runnel__V1__QueueOffset a = RUNNEL__V1__QUEUE_OFFSET__INIT, b = RUNNEL__V1__QUEUE_OFFSET__INIT;
    a.topic = b.topic = (char *)t;
    a.queue = 0;
    a.offset = o0;
    b.queue = 1;
    b.offset = o1;
    Runnel__V1__QueueOffset *v[2] = {&a, &b};
    Runnel__V1__CommitOffsetsRequest r = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
    r.group = (char *)g;
    r.n_offsets = 2;
    r.offsets = v;
    if (want == 0) {
        ProtobufCMessage *m = call_ok(s, RN_RPC_METHOD("CommitOffsets"), &r.base,
                                      &runnel__v1__commit_offsets_response__descriptor);
        protobuf_c_message_free_unpacked(m, NULL);
    } else {
        call_fail(s, RN_RPC_METHOD("CommitOffsets"), &r.base,
                  &runnel__v1__commit_offsets_response__descriptor, want, err);
    }
}

static void test_groups_and_checkpoints(void **state)
{
    srv_t *s = *state;
    char err[RN_ERRMSG_SIZE];
    int64_t v[4];
    create_topic(s, "orders", 2);
    fill(s, "orders", 0, 40, 0);
    fill(s, "orders", 1, 60, 0);
    /* An unknown group has no offsets. */
    assert_int_equal(group_offsets(s, "g1", "orders", v, 4), 0);
    commit(s, "g1", "orders", 10, 20, 0, err);
    assert_int_equal(group_offsets(s, "g1", "orders", v, 4), 2);
    assert_int_equal(v[0], 10);
    assert_int_equal(v[1], 20);
    /* Out of range: nothing of the commit lands. */
    commit(s, "g1", "orders", 11, 61, 11, err);
    assert_non_null(strstr(err, "[0, 60]"));
    group_offsets(s, "g1", "orders", v, 4);
    assert_int_equal(v[0], 10);
    commit(s, "g1", "nosuch", 1, 1, 5, err);
    commit(s, "bad/group", "orders", 1, 1, 3, err);

    Runnel__V1__ListGroupsRequest lg = RUNNEL__V1__LIST_GROUPS_REQUEST__INIT;
    Runnel__V1__ListGroupsResponse *g = (void *)call_ok(
        s, RN_RPC_METHOD("ListGroups"), &lg.base, &runnel__v1__list_groups_response__descriptor);
    assert_int_equal(g->n_groups, 1);
    assert_string_equal(g->groups[0], "g1");
    protobuf_c_message_free_unpacked(&g->base, NULL);

    Runnel__V1__CreateCheckpointRequest cc = RUNNEL__V1__CREATE_CHECKPOINT_REQUEST__INIT;
    cc.group = "g1";
    cc.name = "before";
    Runnel__V1__Checkpoint *cp = (void *)call_ok(s, RN_RPC_METHOD("CreateCheckpoint"), &cc.base,
                                                 &runnel__v1__checkpoint__descriptor);
    assert_string_equal(cp->name, "before");
    assert_int_equal(cp->n_offsets, 2);
    assert_int_equal(cp->offsets[1]->offset, 20);
    protobuf_c_message_free_unpacked(&cp->base, NULL);
    call_fail(s, RN_RPC_METHOD("CreateCheckpoint"), &cc.base, &runnel__v1__checkpoint__descriptor,
              6, err);
    cc.group = "nogroup";
    call_fail(s, RN_RPC_METHOD("CreateCheckpoint"), &cc.base, &runnel__v1__checkpoint__descriptor,
              5, err);

    /* Reset to latest, then back to the checkpoint, then earliest. */
    Runnel__V1__ResetGroupRequest rg = RUNNEL__V1__RESET_GROUP_REQUEST__INIT;
    rg.group = "g1";
    rg.topic = "orders";
    rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_LATEST;
    rg.latest = 1;
    Runnel__V1__FetchOffsetsResponse *fo = (void *)call_ok(
        s, RN_RPC_METHOD("ResetGroup"), &rg.base, &runnel__v1__fetch_offsets_response__descriptor);
    assert_int_equal(fo->n_offsets, 2);
    assert_int_equal(fo->offsets[0]->offset, 40);
    assert_int_equal(fo->offsets[1]->offset, 60);
    protobuf_c_message_free_unpacked(&fo->base, NULL);
    rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_CHECKPOINT;
    rg.checkpoint = "before";
    fo = (void *)call_ok(s, RN_RPC_METHOD("ResetGroup"), &rg.base,
                         &runnel__v1__fetch_offsets_response__descriptor);
    assert_int_equal(fo->offsets[0]->offset, 10);
    assert_int_equal(fo->offsets[1]->offset, 20);
    protobuf_c_message_free_unpacked(&fo->base, NULL);
    rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_TIMESTAMP_MS;
    rg.timestamp_ms = 1700000000000 + 30;
    fo = (void *)call_ok(s, RN_RPC_METHOD("ResetGroup"), &rg.base,
                         &runnel__v1__fetch_offsets_response__descriptor);
    assert_int_equal(fo->offsets[0]->offset, 30);
    assert_int_equal(fo->offsets[1]->offset, 30);
    protobuf_c_message_free_unpacked(&fo->base, NULL);
    rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_CHECKPOINT;
    rg.checkpoint = "missing";
    call_fail(s, RN_RPC_METHOD("ResetGroup"), &rg.base,
              &runnel__v1__fetch_offsets_response__descriptor, 5, err);
    rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO__NOT_SET;
    call_fail(s, RN_RPC_METHOD("ResetGroup"), &rg.base,
              &runnel__v1__fetch_offsets_response__descriptor, 3, err);
    rg.to_case = RUNNEL__V1__RESET_GROUP_REQUEST__TO_EARLIEST;
    rg.earliest = 1;
    rg.group = "nogroup";
    call_fail(s, RN_RPC_METHOD("ResetGroup"), &rg.base,
              &runnel__v1__fetch_offsets_response__descriptor, 5, err);

    Runnel__V1__ListCheckpointsRequest lc = RUNNEL__V1__LIST_CHECKPOINTS_REQUEST__INIT;
    Runnel__V1__ListCheckpointsResponse *l = (void *)call_ok(
        s, RN_RPC_METHOD("ListCheckpoints"), &lc.base,
        &runnel__v1__list_checkpoints_response__descriptor);
    assert_int_equal(l->n_checkpoints, 1);
    assert_string_equal(l->checkpoints[0]->group, "g1");
    assert_int_equal(l->checkpoints[0]->n_offsets, 2);
    protobuf_c_message_free_unpacked(&l->base, NULL);
    lc.group = "nogroup";
    call_fail(s, RN_RPC_METHOD("ListCheckpoints"), &lc.base,
              &runnel__v1__list_checkpoints_response__descriptor, 5, err);

    Runnel__V1__DropCheckpointRequest dc = RUNNEL__V1__DROP_CHECKPOINT_REQUEST__INIT;
    dc.group = "g1";
    dc.name = "before";
    ProtobufCMessage *m = call_ok(s, RN_RPC_METHOD("DropCheckpoint"), &dc.base,
                                  &runnel__v1__drop_checkpoint_response__descriptor);
    protobuf_c_message_free_unpacked(m, NULL);
    call_fail(s, RN_RPC_METHOD("DropCheckpoint"), &dc.base,
              &runnel__v1__drop_checkpoint_response__descriptor, 5, err);
    /* Offsets survive a restart (they live in meta.db); SIGINT stops as SIGTERM. */
    srv_stop_sig(s, SIGINT);
    srv_start(s);
    assert_int_equal(group_offsets(s, "g1", "orders", v, 4), 2);
    assert_int_equal(v[0], 30);
}

/* DeleteTopic: NOT_FOUND afterwards for every call naming it; recreated, it
 * starts at 0, and an idempotent producer's state on the old topic does not
 * make its first batch on the new one a "duplicate" of a deleted batch. */
static void test_delete_topic(void **state)
{
    srv_t *s = *state;
    char err[RN_ERRMSG_SIZE];
    int64_t pid;
    int epoch;
    create_topic(s, "del", 2);
    init_producer(s, 0, &pid, &epoch);
    batch_t b;
    make_batch(&b, RN_BATCH_CODEC_NONE, 4, 0, pid, epoch, 0);
    int64_t base = -1;
    int dup = -1;
    assert_int_equal(produce(s, "del", 1, &b, 1, 0, &base, &dup, NULL), 0);
    fill(s, "del", 1, 6, 4);
    assert_int_equal(hwm_of(s, "del", 1), 10);

    Runnel__V1__DeleteTopicRequest dr = RUNNEL__V1__DELETE_TOPIC_REQUEST__INIT;
    dr.name = "del";
    ProtobufCMessage *m = call_ok(s, RN_RPC_METHOD("DeleteTopic"), &dr.base,
                                  &runnel__v1__delete_topic_response__descriptor);
    protobuf_c_message_free_unpacked(m, NULL);
    call_fail(s, RN_RPC_METHOD("DeleteTopic"), &dr.base,
              &runnel__v1__delete_topic_response__descriptor, 5, err);
    assert_non_null(strstr(err, "unknown topic 'del'"));
    Runnel__V1__DescribeTopicRequest desc = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
    desc.name = "del";
    call_fail(s, RN_RPC_METHOD("DescribeTopic"), &desc.base, &runnel__v1__topic_info__descriptor,
              5, err);
    int st = -1;
    assert_true(produce_err(s, "del", 1, &b, 1, &st, err) != 0);
    assert_int_equal(st, 5);

    /* Recreated: offset 0; the same producer's batch with sequence 0 is new
     * there (its state on the deleted queue went with it). */
    create_topic(s, "del", 2);
    assert_int_equal(hwm_of(s, "del", 1), 0);
    assert_int_equal(produce(s, "del", 1, &b, 1, 0, &base, &dup, NULL), 0);
    assert_int_equal(base, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(hwm_of(s, "del", 1), 4);
    batch_free(&b);
    served_still(s);
}

static void test_unimplemented(void **state)
{
    srv_t *s = *state;
    char err[RN_ERRMSG_SIZE];
    /* (the pipeline RPCs are served: tests/test_etl_server.c) */
    /* A method the service does not have. */
    Runnel__V1__ListTopicsRequest lt = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    call_fail(s, "/runnel.v1.Runnel/NoSuchMethod", &lt.base,
              &runnel__v1__list_topics_response__descriptor, 12, err);
    served_still(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_topics, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_remap_and_stores, srv_setup_store_root,
                                        srv_teardown),
        cmocka_unit_test_setup_teardown(test_list_offsets, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_groups_and_checkpoints, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_delete_topic, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_unimplemented, srv_setup, srv_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
