/*
 * test_server_strings.c — string fields holding a NUL byte are refused by
 * runneld, not cut short: a real runneld on loopback gets requests whose
 * topic, group, checkpoint, pipeline, store path, start position or SQL
 * text holds a NUL, at the top level and inside nested messages (unary and
 * streaming calls), and must answer INVALID_ARGUMENT naming the field and
 * the NUL's position, having changed nothing; `runnel topic list` then shows
 * no topic cut at the NUL.
 *
 * protobuf-c packs a char * string with strlen, so it cannot send a NUL
 * itself: the string goes out as an unknown field of the same number and
 * wire type (packed verbatim), which is exactly what such a string looks like
 * on the wire. The real field is left empty, so it is not packed at all.
 */
#include "tests/test_server.h"
#include "tests/util/util.h"

/* One string field sent raw: its tag and "\x<len>" + bytes. */
typedef struct raw {
    ProtobufCMessageUnknownField uf;
    uint8_t buf[128];
} raw_t;

/* Attach field number num = s[0..n) (n < 128) to m as raw bytes. */
static void raw_string(ProtobufCMessage *m, raw_t *r, uint32_t num, const char *s, size_t n)
{
    assert_true(n < 128);
    r->buf[0] = (uint8_t)n;
    memcpy(r->buf + 1, s, n);
    r->uf.tag = num;
    r->uf.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    r->uf.len = n + 1;
    r->uf.data = r->buf;
    m->n_unknown_fields = 1;
    m->unknown_fields = &r->uf;
}

/* A unary call that must fail INVALID_ARGUMENT with a message holding want. */
static void refused(srv_t *s, const char *method, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc, const char *want)
{
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    int st = -1;
    int rc = rn_rpc_call(s->rpc, method, req, resp_desc, &m, CALL_MS, &st, err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    if (rc == 0) fail_msg("%s: accepted a NUL byte", method);
    if (st != 3 || !strstr(err, want))
        fail_msg("%s: status %d \"%s\", wanted INVALID_ARGUMENT with \"%s\"", method, st, err,
                 want);
}

/* A streaming call (Query) that must end INVALID_ARGUMENT with want. */
static void query_refused(srv_t *s, const ProtobufCMessage *req, const char *want)
{
    rn_rpc_stream_t *qs = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_rpc_stream_open(s->rpc, RN_RPC_METHOD("Query"), req, &qs, err), 0);
    ProtobufCMessage *m = NULL;
    int st = -1;
    int rc = rn_rpc_stream_next(qs, &runnel__v1__query_response__descriptor, &m, &st, err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    rn_rpc_stream_close(qs);
    if (rc >= 0 || st != 3 || !strstr(err, want))
        fail_msg("Query: rc %d status %d \"%s\", wanted INVALID_ARGUMENT with \"%s\"", rc, st,
                 err, want);
}

static size_t topic_count(srv_t *s)
{
    Runnel__V1__ListTopicsRequest req = RUNNEL__V1__LIST_TOPICS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    char err[RN_ERRMSG_SIZE];
    assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("ListTopics"), &req.base,
                                 &runnel__v1__list_topics_response__descriptor, &m, CALL_MS,
                                 NULL, err), 0);
    size_t n = ((Runnel__V1__ListTopicsResponse *)m)->n_topics;
    protobuf_c_message_free_unpacked(m, NULL);
    return n;
}

/* Topic names: CreateTopic, AlterTopic, DeleteTopic, DescribeTopic; the
 * topic of Produce, Fetch, ListOffsets, RemapQueue; nothing created. */
static void test_topic_fields(void **state)
{
    srv_t *s = *state;
    create_topic(s, "t", 1);
    raw_t r;
    {
        Runnel__V1__CreateTopicRequest req = RUNNEL__V1__CREATE_TOPIC_REQUEST__INIT;
        raw_string(&req.base, &r, 1, "a\0b", 3);
        refused(s, RN_RPC_METHOD("CreateTopic"), &req.base, &runnel__v1__topic_info__descriptor,
                "topic name contains a NUL byte at position 1 (CreateTopicRequest.name)");
        raw_string(&req.base, &r, 1, "abcd\0", 5);
        refused(s, RN_RPC_METHOD("CreateTopic"), &req.base, &runnel__v1__topic_info__descriptor,
                "topic name contains a NUL byte at position 4");
        raw_string(&req.base, &r, 1, "\0", 1);
        refused(s, RN_RPC_METHOD("CreateTopic"), &req.base, &runnel__v1__topic_info__descriptor,
                "at position 0");
    }
    {
        Runnel__V1__AlterTopicRequest req = RUNNEL__V1__ALTER_TOPIC_REQUEST__INIT;
        req.queues = 4;
        raw_string(&req.base, &r, 1, "t\0x", 3);
        refused(s, RN_RPC_METHOD("AlterTopic"), &req.base, &runnel__v1__topic_info__descriptor,
                "topic name contains a NUL byte at position 1");
    }
    {
        Runnel__V1__DeleteTopicRequest req = RUNNEL__V1__DELETE_TOPIC_REQUEST__INIT;
        raw_string(&req.base, &r, 1, "t\0", 2);
        refused(s, RN_RPC_METHOD("DeleteTopic"), &req.base,
                &runnel__v1__delete_topic_response__descriptor, "topic name contains a NUL");
    }
    {
        Runnel__V1__DescribeTopicRequest req = RUNNEL__V1__DESCRIBE_TOPIC_REQUEST__INIT;
        raw_string(&req.base, &r, 1, "t\0", 2);
        refused(s, RN_RPC_METHOD("DescribeTopic"), &req.base,
                &runnel__v1__topic_info__descriptor, "topic name contains a NUL");
    }
    {
        batch_t b;
        make_batch(&b, RN_BATCH_CODEC_NONE, 3, 0, -1, -1, -1);
        ProtobufCBinaryData bd = {b.len, b.data};
        Runnel__V1__ProduceRequest req = RUNNEL__V1__PRODUCE_REQUEST__INIT;
        req.n_batches = 1;
        req.batches = &bd;
        raw_string(&req.base, &r, 1, "t\0t", 3);
        refused(s, RN_RPC_METHOD("Produce"), &req.base, &runnel__v1__produce_response__descriptor,
                "topic name contains a NUL byte at position 1 (ProduceRequest.topic)");
        batch_free(&b);
    }
    {
        Runnel__V1__FetchRequest req = RUNNEL__V1__FETCH_REQUEST__INIT;
        raw_string(&req.base, &r, 1, "t\0", 2);
        refused(s, RN_RPC_METHOD("Fetch"), &req.base, &runnel__v1__fetch_response__descriptor,
                "(FetchRequest.topic)");
    }
    {
        Runnel__V1__ListOffsetsRequest req = RUNNEL__V1__LIST_OFFSETS_REQUEST__INIT;
        raw_string(&req.base, &r, 1, "t\0", 2);
        refused(s, RN_RPC_METHOD("ListOffsets"), &req.base,
                &runnel__v1__list_offsets_response__descriptor, "(ListOffsetsRequest.topic)");
    }
    {
        Runnel__V1__RemapQueueRequest req = RUNNEL__V1__REMAP_QUEUE_REQUEST__INIT;
        req.topic = "t";
        char dir[PATH_MAX + 8];
        int n = snprintf(dir, sizeof dir, "/tmp/s%c2", '\0');
        raw_string(&req.base, &r, 3, dir, (size_t)n);
        refused(s, RN_RPC_METHOD("RemapQueue"), &req.base, &runnel__v1__topic_info__descriptor,
                "store path contains a NUL byte at position 6 (RemapQueueRequest.store_path)");
    }
    /* Nothing was created, altered, deleted or stored. */
    assert_int_equal(topic_count(s), 1);
    assert_int_equal(hwm_of(s, "t", 0), 0);

    /* `runnel topic list` shows "t" and nothing cut at a NUL ("a"). */
    char target[64], out[PATH_MAX], err[PATH_MAX];
    snprintf(target, sizeof target, "127.0.0.1:%d", s->port);
    snprintf(out, sizeof out, "%s/list.out", s->root);
    snprintf(err, sizeof err, "%s/list.err", s->root);
    const char *argv[] = {"runnel", "--server", target, "topic", "list", NULL};
    int ws = rn_test_run(RN_BIN_DIR "/runnel", argv, NULL, out, err);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    char *text = rn_test_slurp(out, NULL);
    assert_non_null(text);
    int has_t = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char first[64] = "";
        sscanf(line, "%63s", first);
        if (!strcmp(first, "a") || !strcmp(first, "abcd")) fail_msg("topic list: %s", line);
        if (!strcmp(first, "t")) has_t = 1;
    }
    free(text);
    assert_true(has_t);
}

/* Groups and checkpoints: a group name at the top, a topic inside a
 * repeated nested message, a checkpoint name, and one inside a oneof. */
static void test_group_fields(void **state)
{
    srv_t *s = *state;
    create_topic(s, "t", 1);
    raw_t r, r2;
    Runnel__V1__QueueOffset qo = RUNNEL__V1__QUEUE_OFFSET__INIT;
    Runnel__V1__QueueOffset qo2 = RUNNEL__V1__QUEUE_OFFSET__INIT;
    Runnel__V1__QueueOffset *qos[2] = {&qo, &qo2};
    qo.topic = "t";
    Runnel__V1__CommitOffsetsRequest req = RUNNEL__V1__COMMIT_OFFSETS_REQUEST__INIT;
    req.offsets = qos;
    req.n_offsets = 1;
    raw_string(&req.base, &r, 1, "g\0h", 3);
    refused(s, RN_RPC_METHOD("CommitOffsets"), &req.base,
            &runnel__v1__commit_offsets_response__descriptor,
            "group name contains a NUL byte at position 1 (CommitOffsetsRequest.group)");
    req.base.n_unknown_fields = 0;
    req.group = "g";
    req.n_offsets = 2;
    raw_string(&qo2.base, &r2, 1, "t\0", 2);
    refused(s, RN_RPC_METHOD("CommitOffsets"), &req.base,
            &runnel__v1__commit_offsets_response__descriptor,
            "topic name contains a NUL byte at position 1 (CommitOffsetsRequest.offsets[1].topic)");
    /* Nothing was committed: the group does not exist. */
    {
        Runnel__V1__FetchOffsetsRequest f = RUNNEL__V1__FETCH_OFFSETS_REQUEST__INIT;
        f.group = "g";
        ProtobufCMessage *m = NULL;
        char err[RN_ERRMSG_SIZE];
        assert_int_equal(rn_rpc_call(s->rpc, RN_RPC_METHOD("FetchOffsets"), &f.base,
                                     &runnel__v1__fetch_offsets_response__descriptor, &m,
                                     CALL_MS, NULL, err), 0);
        assert_int_equal(((Runnel__V1__FetchOffsetsResponse *)m)->n_offsets, 0);
        protobuf_c_message_free_unpacked(m, NULL);
        raw_string(&f.base, &r, 2, "t\0", 2);
        refused(s, RN_RPC_METHOD("FetchOffsets"), &f.base,
                &runnel__v1__fetch_offsets_response__descriptor, "(FetchOffsetsRequest.topic)");
    }
    {
        Runnel__V1__CreateCheckpointRequest c = RUNNEL__V1__CREATE_CHECKPOINT_REQUEST__INIT;
        c.group = "g";
        raw_string(&c.base, &r, 2, "c\0d", 3);
        refused(s, RN_RPC_METHOD("CreateCheckpoint"), &c.base, &runnel__v1__checkpoint__descriptor,
                "checkpoint name contains a NUL byte at position 1 (CreateCheckpointRequest.name)");
    }
    {
        Runnel__V1__DropCheckpointRequest c = RUNNEL__V1__DROP_CHECKPOINT_REQUEST__INIT;
        raw_string(&c.base, &r, 1, "g\0", 2);
        refused(s, RN_RPC_METHOD("DropCheckpoint"), &c.base,
                &runnel__v1__drop_checkpoint_response__descriptor,
                "group name contains a NUL byte at position 1 (DropCheckpointRequest.group)");
    }
    {
        Runnel__V1__ListCheckpointsRequest c = RUNNEL__V1__LIST_CHECKPOINTS_REQUEST__INIT;
        raw_string(&c.base, &r, 1, "\0", 1);
        refused(s, RN_RPC_METHOD("ListCheckpoints"), &c.base,
                &runnel__v1__list_checkpoints_response__descriptor, "group name contains a NUL");
    }
    {
        Runnel__V1__ResetGroupRequest c = RUNNEL__V1__RESET_GROUP_REQUEST__INIT;
        c.group = "g";
        raw_string(&c.base, &r, 6, "c\0", 2);
        refused(s, RN_RPC_METHOD("ResetGroup"), &c.base,
                &runnel__v1__fetch_offsets_response__descriptor,
                "checkpoint name contains a NUL byte at position 1 (ResetGroupRequest.checkpoint)");
    }
}

/* SQL text and start position of Query (a streaming call); CreatePipeline's
 * SQL; the pipeline name of Get/Pause/Resume/DropPipeline. */
static void test_sql_fields(void **state)
{
    srv_t *s = *state;
    create_topic(s, "t", 1);
    raw_t r;
    {
        Runnel__V1__QueryRequest q = RUNNEL__V1__QUERY_REQUEST__INIT;
        const char sql[] = "SELECT 1;\0DROP STREAM x";
        raw_string(&q.base, &r, 1, sql, sizeof sql - 1);
        query_refused(s, &q.base, "SQL text contains a NUL byte at position 9 (QueryRequest.sql)");
        q.sql = "SELECT 1";
        raw_string(&q.base, &r, 3, "latest\0", 7);
        query_refused(s, &q.base, "start position contains a NUL byte at position 6");
    }
    {
        Runnel__V1__CreatePipelineRequest c = RUNNEL__V1__CREATE_PIPELINE_REQUEST__INIT;
        const char sql[] = "CREATE PIPELINE p\0 AS INSERT INTO t SELECT * FROM t";
        raw_string(&c.base, &r, 1, sql, sizeof sql - 1);
        refused(s, RN_RPC_METHOD("CreatePipeline"), &c.base,
                &runnel__v1__pipeline_status__descriptor,
                "SQL text contains a NUL byte at position 17 (CreatePipelineRequest.sql)");
    }
    static const char *const methods[] = {"GetPipeline", "PausePipeline", "ResumePipeline"};
    for (size_t i = 0; i < 3; i++) {
        Runnel__V1__PipelineRequest p = RUNNEL__V1__PIPELINE_REQUEST__INIT;
        raw_string(&p.base, &r, 1, "p\0q", 3);
        char method[64];
        snprintf(method, sizeof method, "/runnel.v1.Runnel/%s", methods[i]);
        refused(s, method, &p.base, &runnel__v1__pipeline_status__descriptor,
                "pipeline name contains a NUL byte at position 1 (PipelineRequest.name)");
    }
    {
        Runnel__V1__PipelineRequest p = RUNNEL__V1__PIPELINE_REQUEST__INIT;
        raw_string(&p.base, &r, 1, "p\0", 2);
        refused(s, RN_RPC_METHOD("DropPipeline"), &p.base,
                &runnel__v1__drop_pipeline_response__descriptor, "pipeline name contains a NUL");
    }
    /* The broker still serves, and a string without NUL still works. */
    Runnel__V1__QueryRequest q = RUNNEL__V1__QUERY_REQUEST__INIT;
    q.sql = "SHOW STREAMS";
    rn_rpc_stream_t *qs = NULL;
    char err[RN_ERRMSG_SIZE] = "";
    assert_int_equal(rn_rpc_stream_open(s->rpc, RN_RPC_METHOD("Query"), &q.base, &qs, err), 0);
    ProtobufCMessage *m = NULL;
    int rc = rn_rpc_stream_next(qs, &runnel__v1__query_response__descriptor, &m, NULL, err);
    if (rc < 0) fail_msg("SHOW STREAMS: %s", err);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    rn_rpc_stream_close(qs);
    served_still(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_topic_fields, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_group_fields, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_sql_fields, srv_setup, srv_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
