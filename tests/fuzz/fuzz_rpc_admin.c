/*
 * fuzz_rpc_admin.c — libFuzzer target for runneld's unary request handlers
 * other than Produce and Fetch (those have their own targets): the first
 * input byte picks the RPC, the rest is unpacked as that RPC's request
 * message and handed to its handler (see fuzz_rpc.h for the invariants).
 *
 * RPCs covered, by first byte % 15: InitProducer, ListOffsets, CreateTopic,
 * AlterTopic, ListTopics, DescribeTopic, RemapQueue, ListStores,
 * CommitOffsets, FetchOffsets, ListGroups, ResetGroup, CreateCheckpoint,
 * ListCheckpoints, DropCheckpoint. Not here: Query (a server stream run on a
 * worker thread, server/query.c) and the pipeline RPCs (server/pipelines.c,
 * which start threads); their requests are covered by the CLI and server
 * tests, not by this target.
 *
 * Invariants (besides fuzz_rpc.h's):
 *  1. RemapQueue's store_path is confined to the fuzzing directory — the
 *     input's path characters are kept, its location is not — so that
 *     fuzzing never creates stores elsewhere.
 *  2. CreateTopic / AlterTopic queue counts in (MAX_FUZZ_QUEUES, 10000] are
 *     lowered to MAX_FUZZ_QUEUES (counts above 10000 are kept: they must be
 *     refused). DescribeTopic costs O(queues^2) today (rn_meta_items cannot
 *     use its key; see tests/RELIABILITY.md), so a topic of thousands of
 *     queues makes every later input time out and hides everything else.
 */
#include "tests/fuzz/fuzz_rpc.h"

typedef struct rpc {
    const char *name;
    const ProtobufCMessageDescriptor *desc;
    rn_hd_fn fn;
    unsigned long runs;
} rpc_t;

#define D(x) &runnel__v1__##x##__descriptor
static rpc_t rpcs[] = {
    {"InitProducer", D(init_producer_request), rn_hd_init_producer, 0},
    {"ListOffsets", D(list_offsets_request), rn_hd_list_offsets, 0},
    {"CreateTopic", D(create_topic_request), rn_hd_create_topic, 0},
    {"AlterTopic", D(alter_topic_request), rn_hd_alter_topic, 0},
    {"ListTopics", D(list_topics_request), rn_hd_list_topics, 0},
    {"DescribeTopic", D(describe_topic_request), rn_hd_describe_topic, 0},
    {"RemapQueue", D(remap_queue_request), rn_hd_remap_queue, 0},
    {"ListStores", D(list_stores_request), rn_hd_list_stores, 0},
    {"CommitOffsets", D(commit_offsets_request), rn_hd_commit_offsets, 0},
    {"FetchOffsets", D(fetch_offsets_request), rn_hd_fetch_offsets, 0},
    {"ListGroups", D(list_groups_request), rn_hd_list_groups, 0},
    {"ResetGroup", D(reset_group_request), rn_hd_reset_group, 0},
    {"CreateCheckpoint", D(create_checkpoint_request), rn_hd_create_checkpoint, 0},
    {"ListCheckpoints", D(list_checkpoints_request), rn_hd_list_checkpoints, 0},
    {"DropCheckpoint", D(drop_checkpoint_request), rn_hd_drop_checkpoint, 0},
};
#undef D
#define NRPCS (sizeof rpcs / sizeof rpcs[0])

static void print_runs(void)
{
    fprintf(stderr, "fuzz_rpc_admin: inputs per handler:");
    for (size_t i = 0; i < NRPCS; i++) fprintf(stderr, " %s=%lu", rpcs[i].name, rpcs[i].runs);
    fprintf(stderr, "\n");
}

#define MAX_FUZZ_QUEUES 256

/* CreateTopic / AlterTopic: the queue count capped as said above. */
static void topic_count(const rpc_t *r, const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(r->desc, NULL, size, data);
    if (!m) return;
    uint32_t *queues = r->fn == rn_hd_create_topic
                           ? &((Runnel__V1__CreateTopicRequest *)m)->queues
                           : &((Runnel__V1__AlterTopicRequest *)m)->queues;
    if (*queues > MAX_FUZZ_QUEUES && *queues <= 10000) *queues = MAX_FUZZ_QUEUES;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    FZ_CHECK(buf != NULL);
    protobuf_c_message_pack(m, buf);
    protobuf_c_message_free_unpacked(m, NULL);
    fz_unary(r->desc, r->fn, buf, n);
    free(buf);
}

/* RemapQueue: keep the handler's logic, confine the path (see above). */
static void remap(const uint8_t *data, size_t size)
{
    rn_hd_t *h = fz_handlers();
    Runnel__V1__RemapQueueRequest *req = (Runnel__V1__RemapQueueRequest *)protobuf_c_message_unpack(
        &runnel__v1__remap_queue_request__descriptor, NULL, size, data);
    if (!req) return;
    char path[PATH_MAX + 64];
    char *orig = req->store_path;
    if (orig && orig[0]) {
        int n = snprintf(path, sizeof path, "%s/stores/", fz_root);
        for (const char *p = orig; *p && n < (int)sizeof path - 1 && p - orig < 48; p++)
            path[n++] = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '/' ? *p : '_';
        path[n] = '\0';
        if (strstr(path + strlen(fz_root), "..")) path[n - 1] = '_';
        req->store_path = path;
    }
    rn_arena_t a = RN_ARENA_INIT;
    ProtobufCMessage *resp = NULL;
    rn_status_t st;
    memset(&st, 0, sizeof st);
    int rc = rn_hd_remap_queue(h, &req->base, &a, &resp, &st);
    fz_check_result(rc, resp, &st);
    rn_arena_free(&a);
    req->store_path = orig;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    fz_still_serving();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int registered;
    if (!registered) { registered = 1; atexit(print_runs); }
    if (size < 1) return 0;
    rpc_t *r = &rpcs[data[0] % NRPCS];
    r->runs++;
    if (r->fn == rn_hd_remap_queue) remap(data + 1, size - 1);
    else if (r->fn == rn_hd_create_topic || r->fn == rn_hd_alter_topic)
        topic_count(r, data + 1, size - 1);
    else fz_unary(r->desc, r->fn, data + 1, size - 1);
    return 0;
}
