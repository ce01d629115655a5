# runnel — top-level build.
#
#   make            build bin/runnel, bin/runnel-bench and the core library
#   make test       build and run every test (unit, integration, corpus replay)
#   make demo       the end-to-end demo on an embedded data directory
#   make cluster-demo  three cluster nodes on loopback: status, the leader killed
#   make cluster-test  the Jepsen-style harness, long form (tests/cluster/jepsen.py)
#   make fuzz       run each libFuzzer target for FUZZ_SECONDS (clang)
#   make bench      the benchmark suite against Redis and SQLite (BENCH_QUICK=1: short)
#   make SAN=1 test the same tests built with ASan+UBSan, in build-san/
#   make TSAN=1 test  the core tests (CORE_TESTS: those that do not link the
#                   network library) built with ThreadSanitizer, in build-tsan/
#   make TEST=log test    run only tests/test_log.c
#
# Every target first runs scripts/install-deps.sh, which installs missing Debian
# packages and does nothing when they are present.

SAN ?=
TSAN ?=
ifeq ($(TSAN),1)
BUILD ?= build-tsan
BIN   ?= build-tsan/bin
SANFLAGS = -fsanitize=thread -fno-omit-frame-pointer
OPT ?= -O1 -g
# A core test file's few cases that go through runneld or the client library
# are built only outside this leg (#ifndef RN_CORE_TESTS_ONLY).
CPPFLAGS += -DRN_CORE_TESTS_ONLY
else ifeq ($(SAN),1)
BUILD ?= build-san
BIN   ?= build-san/bin
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT ?= -O1 -g
else
BUILD ?= build
BIN   ?= bin
SANFLAGS =
OPT ?= -O2 -g
endif

CC ?= cc
# The core (no network, no event loop): one static library.
CORE_DIRS := common batch log logical-queues streamsql etl
# The network layer: the client library and the protobuf-c code generated from
# proto/*.proto, in a second library; the server links both.
NET_DIRS  := client
# Batch codecs: lz4 (runnel's own), zlib, snappy and zstd (Kafka clients').
# Debian 12's libsnappy-dev ships snappy.pc, older ones none: then -lsnappy.
PKGS_CORE := sqlite3 liblz4 zlib libzstd libpcre2-8
PKGS_NET  := grpc libprotobuf-c libuv libmicrohttpd libssl libcrypto raft
PKGS_TEST := cmocka

# Lazy (=): pkg-config runs only after the dependency step has installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS_CORE) $(PKGS_NET) $(PKGS_TEST))
LIBS_CORE  = $(shell pkg-config --libs $(PKGS_CORE)) \
             $(shell pkg-config --libs snappy 2>/dev/null || echo -lsnappy) -lpthread -lm
LIBS_NET   = $(shell pkg-config --libs $(PKGS_NET))
LIBS_TEST  = $(shell pkg-config --libs $(PKGS_TEST))

CPPFLAGS += -I. -I$(BUILD)/gen -D_GNU_SOURCE -DRN_BIN_DIR='"$(abspath $(BIN))"' \
            -DRN_SOURCE_DIR='"$(abspath .)"'
CFLAGS   += -std=c11 -Wall -Wextra -Werror -Wshadow -Wvla -Wno-unused-parameter \
            $(OPT) $(SANFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS) -Wl,--as-needed

CORE_SRC  := $(foreach d,$(CORE_DIRS),$(wildcard $(d)/*.c))
CORE_OBJ  := $(CORE_SRC:%.c=$(BUILD)/%.o)
CORE_LIB  := $(BUILD)/librunnel-core.a

PROTO_SRC := $(wildcard proto/*.proto)
PROTO_C   := $(PROTO_SRC:proto/%.proto=$(BUILD)/gen/proto/%.pb-c.c)
PROTO_H   := $(PROTO_C:.c=.h)
NET_SRC   := $(foreach d,$(NET_DIRS),$(wildcard $(d)/*.c))
NET_OBJ   := $(NET_SRC:%.c=$(BUILD)/%.o) $(PROTO_C:.c=.o)
NET_LIB   := $(BUILD)/librunnel.a
LIBS      = $(NET_LIB) $(CORE_LIB)
LIBS_ALL  = $(LIBS_NET) $(LIBS_CORE)

RUNNEL_SRC := $(wildcard cli/runnel*.c)
STREAMSQL_SRC := $(wildcard cli/streamsql*.c)
# runneld: its gRPC front and handlers (server/), its Kafka front (kafka/) and
# its cluster controller (cluster/, on libraft).
SERVER_SRC := $(wildcard server/*.c kafka/*.c cluster/*.c)
BENCH_SRC  := $(wildcard bench/*.c)
TEST_SRC   := $(wildcard tests/test_*.c)
# Helpers shared by the tests (temporary directories, batches, child processes).
TESTUTIL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/util/*.c))
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# The core tests: they link only the core library (no gRPC, libuv or
# protobuf-c) and start no program that does; the TSan leg runs these, linked
# without the network libraries, so a core test that came to need them fails
# to link there.
CORE_TESTS := acl_model batch consumer crc32c datadir json etl etl_order faults groups log log_concurrency \
              log_recovery mapping meta root streamsql streamsql_batching streamsql_fn streamsql_oracle \
              streamsql_topn streamsql_sjoin streamsql_pushdown \
              cluster_fsm
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
REPLAY_BIN := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=$(BUILD)/fuzz/replay_%)
FUZZ_BIN   := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=build-fuzz/fuzz_%)

PROGRAMS := $(BIN)/runnel $(BIN)/runnel-bench
ifneq ($(SERVER_SRC),)
PROGRAMS += $(BIN)/runneld
endif
ifneq ($(STREAMSQL_SRC),)
PROGRAMS += $(BIN)/streamsql
endif
DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all test demo cluster-demo cluster-test fuzz clean deps crash-test soak reconnect-soak bench
# Keep objects make would otherwise delete as intermediates (no rebuild churn).
.SECONDARY:
all: $(PROGRAMS)

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/install-deps.sh
	@mkdir -p $(@D)
	@sh scripts/install-deps.sh
	@touch $@

# protobuf-c code is generated at build time into $(BUILD)/gen/proto/, never
# committed; every object waits for it (order-only), so any file may include it.
$(BUILD)/gen/proto/%.pb-c.c $(BUILD)/gen/proto/%.pb-c.h: proto/%.proto | $(DEPS_STAMP)
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen $<

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(filter-out -Wextra -Wshadow,$(CFLAGS)) -c $< -o $@

$(BUILD)/%.o: %.c | $(DEPS_STAMP) $(PROTO_H)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c $< -o $@

$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(NET_LIB): $(NET_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/runnel: $(RUNNEL_SRC:%.c=$(BUILD)/%.o) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_ALL)

$(BIN)/streamsql: $(STREAMSQL_SRC:%.c=$(BUILD)/%.o) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_ALL)

$(BIN)/runneld: $(SERVER_SRC:%.c=$(BUILD)/%.o) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_ALL)

# The bench alone links librdkafka (runnel-bench kafka-produce / kafka-consume).
$(BIN)/runnel-bench: $(BENCH_SRC:%.c=$(BUILD)/%.o) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_ALL) $(shell pkg-config --libs rdkafka)

ifeq ($(TSAN),1)
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTUTIL_OBJ) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_CORE)
else
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTUTIL_OBJ) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_ALL)
endif

# The controller state's codecs (cluster/fsm.c: pure, no raft or network).
# (Linked before the libraries, which hold what fsm.o needs.)
$(BUILD)/tests/test_cluster_fsm: $(BUILD)/tests/test_cluster_fsm.o $(BUILD)/cluster/fsm.o \
                                 $(TESTUTIL_OBJ) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_CORE)
$(BUILD)/fuzz/replay_cluster_cmd: $(BUILD)/tests/fuzz/fuzz_cluster_cmd.o $(BUILD)/tests/fuzz/replay.o \
                                  $(BUILD)/cluster/fsm.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_ALL)
build-fuzz/fuzz_cluster_cmd: tests/fuzz/fuzz_cluster_cmd.c cluster/fsm.c cluster/fsm.h
	@sh scripts/install-deps.sh fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ $< cluster/fsm.c $(CORE_SRC) $(LIBS_CORE)

# Tests that run runneld's server in process (to inject faults through rn_sys),
# or call its modules directly (test_metrics renders label escapes): the
# server's objects but its main.
INPROC_TESTS := $(BUILD)/tests/test_server_partial $(BUILD)/tests/test_metrics
$(INPROC_TESTS): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(TESTUTIL_OBJ) \
                 $(patsubst %.c,$(BUILD)/%.o,$(filter-out server/runneld.c,$(SERVER_SRC))) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_ALL)

# Corpus replay: each fuzz target linked with a cmocka driver that runs every
# file of tests/fuzz/corpus/NAME/ through it (one test per file).
$(BUILD)/fuzz/replay_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_ALL)

# TEST=name runs tests/test_name.c only.
ifneq ($(TEST),)
RUN_TESTS := $(BUILD)/tests/test_$(TEST)
RUN_REPLAY :=
else ifeq ($(TSAN),1)
RUN_TESTS := $(CORE_TESTS:%=$(BUILD)/tests/test_%)
RUN_REPLAY :=
else
RUN_TESTS := $(TEST_BIN)
RUN_REPLAY := $(REPLAY_BIN)
endif

# The example native function library of --udf-dir (tests/udf/rn_example.c), and
# a library without an entry point that --udf-dir must refuse.
UDF_LIBS := $(BIN)/udf-example/librn_example.so $(BIN)/udf-noentry/librn_noentry.so
$(BIN)/udf-example/librn_example.so: tests/udf/rn_example.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared $< -o $@ -lm
$(BIN)/udf-noentry/librn_noentry.so: tests/udf/rn_noentry.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared $< -o $@

ifeq ($(TSAN),1)
# Only the core tests: the programs link gRPC, which is not built with TSan.
# halt_on_error: the first race fails its test binary (run.sh counts it).
test: $(RUN_TESTS)
	@$(if $(filter-out $(CORE_TESTS),$(TEST)),echo "TSAN=1 runs core tests only: $(CORE_TESTS)"; exit 1;) \
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(abspath tests/tsan.supp) $(TSAN_OPTIONS)" \
	    sh tests/run.sh $(RUN_TESTS)
else
test: $(PROGRAMS) $(UDF_LIBS) $(RUN_TESTS) $(RUN_REPLAY)
	@sh tests/run.sh $(RUN_TESTS) $(RUN_REPLAY)
endif

demo: $(PROGRAMS)
	@sh scripts/demo.sh $(BIN)

# Three cluster nodes on loopback: status, kill -9 of the controller leader,
# a new leader, the node rejoining, SIGTERM (scripts/cluster-demo.sh).
cluster-demo: $(PROGRAMS)
	@sh scripts/cluster-demo.sh $(BIN)

# The Jepsen-style harness, long form: CLUSTER_TRIALS seeded trials from
# CLUSTER_SEED, CLUSTER_FAULTS faults each, every fault kind (kill -9 of a queue
# leader, of the controller leader, of a follower; SIGSTOP; network partitions,
# which need root for network namespaces and are skipped with a message
# elsewhere). `make test` runs one short trial (tests/test_cluster_jepsen.c).
# Results: tests/RELIABILITY.md.
CLUSTER_TRIALS ?= 5
CLUSTER_FAULTS ?= 8
CLUSTER_SEED ?= 1
cluster-test: $(PROGRAMS)
	@python3 tests/cluster/jepsen.py --bin $(BIN) --trials $(CLUSTER_TRIALS) \
	    --faults $(CLUSTER_FAULTS) --seed $(CLUSTER_SEED) \
	    --kinds kill-leader,kill-controller,kill-follower,pause,partition,bridge

# The benchmark suite against Redis streams and SQLite (bench/suite.sh): installs
# redis-server, gnuplot and jq (install-deps.sh bench), writes bench/results.json,
# bench/charts/*.png and the generated section of bench/RESULTS.md. 2.5-4 min on
# the 2 shared cores; BENCH_QUICK=1 for ~1 min. Not part of `make test` or CI.
bench: $(PROGRAMS)
	@sh bench/suite.sh $(BIN)

# libFuzzer: clang, built outside $(BUILD) because the flags differ.
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS = -std=c11 -g -O1 -I. -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
              $(shell pkg-config --cflags $(PKGS_CORE))
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(foreach d,$(CORE_DIRS),$(wildcard $(d)/*.c $(d)/*.h))
	@sh scripts/install-deps.sh fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ $< $(CORE_SRC) $(LIBS_CORE)

# fuzz_rpc_*: runneld's request handlers (server/handlers.c, producers.c),
# called without the gRPC front but after its string check (reqcheck.c); they
# also link the generated protobuf-c code, and what metrics.c calls (auth.c,
# log.c).
HD_SRC := $(filter server/handlers.c server/producers.c server/metrics.c server/reqcheck.c \
                   server/auth.c server/log.c,$(SERVER_SRC))
$(BUILD)/fuzz/replay_rpc_%: $(BUILD)/tests/fuzz/fuzz_rpc_%.o $(BUILD)/tests/fuzz/replay.o \
                            $(HD_SRC:%.c=$(BUILD)/%.o) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_ALL)
build-fuzz/fuzz_rpc_%: tests/fuzz/fuzz_rpc_%.c tests/fuzz/fuzz_rpc.h $(HD_SRC) $(PROTO_C) \
                       $(foreach d,$(CORE_DIRS),$(wildcard $(d)/*.c $(d)/*.h))
	@sh scripts/install-deps.sh fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -I$(BUILD)/gen $(shell pkg-config --cflags $(PKGS_NET)) \
	    -o $@ $< $(HD_SRC) $(PROTO_C) $(CORE_SRC) $(LIBS_CORE) $(LIBS_NET)

# fuzz_kafka_*: the Kafka front's frame splitter, request headers and
# handlers (kafka/), without its sockets: every server and kafka source but
# runneld's main and kafka/front.c, whose entry points the handlers call are
# tests/fuzz/kafka_stub.c (synchronous).
KFZ_SRC := $(filter-out server/runneld.c kafka/front.c,$(SERVER_SRC)) tests/fuzz/kafka_stub.c
$(BUILD)/fuzz/replay_kafka_%: $(BUILD)/tests/fuzz/fuzz_kafka_%.o $(BUILD)/tests/fuzz/replay.o \
                              $(KFZ_SRC:%.c=$(BUILD)/%.o) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_ALL)
build-fuzz/fuzz_kafka_%: tests/fuzz/fuzz_kafka_%.c tests/fuzz/fuzz_kafka.h tests/fuzz/fuzz_rpc.h \
                         $(KFZ_SRC) $(PROTO_C) $(NET_SRC) \
                         $(foreach d,$(CORE_DIRS) kafka,$(wildcard $(d)/*.c $(d)/*.h))
	@sh scripts/install-deps.sh fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -I$(BUILD)/gen $(shell pkg-config --cflags $(PKGS_NET)) -o $@ $< \
	    $(KFZ_SRC) $(PROTO_C) $(NET_SRC) $(CORE_SRC) $(LIBS_CORE) $(LIBS_NET)

fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$${f#build-fuzz/fuzz_}; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  echo "fuzz $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	      build-fuzz/corpus-$$n tests/fuzz/corpus/$$n || exit 1; done

# Crash loop (tests/crash/): SIGKILL a writer under load with each fsync policy
# and check the store against its acks, then the same for runneld over gRPC.
# `make crash-test TRIALS=N` runs N trials per policy; tests/test_crash.c runs
# a short version in `make test`. `make soak SECONDS=N [SOAK_CLIENTS=M]`: M
# producers and M consumers against runneld, RSS sampled, then SIGTERM.
TRIALS ?= 20
SECONDS ?= 60
SOAK_CLIENTS ?= 2
CRASH_BIN := $(BUILD)/crash/crash-test
CRASH_RUNNELD := $(if $(SERVER_SRC),$(BIN)/runneld)
$(CRASH_BIN): $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/crash/*.c)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_ALL)
$(BUILD)/tests/test_crash: | $(CRASH_BIN)
crash-test: $(CRASH_BIN) $(CRASH_RUNNELD)
	$(CRASH_BIN) --trials $(TRIALS) $(if $(CRASH_RUNNELD),--runneld $(CRASH_RUNNELD))
soak: $(CRASH_BIN) $(BIN)/runneld
	$(CRASH_BIN) --soak $(SECONDS) --clients $(SOAK_CLIENTS) --runneld $(BIN)/runneld
# `make reconnect-soak [RECORDS=N]`: tests/test_reconnect.c with N records (default
# 60,000,000) through `runnel --server produce` across three kill -9 restarts.
RECORDS ?= 60000000
reconnect-soak: $(PROGRAMS) $(BUILD)/tests/test_reconnect
	RN_RECONNECT_RECORDS=$(RECORDS) $(BUILD)/tests/test_reconnect

clean:
	rm -rf build build-san build-tsan build-fuzz bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
