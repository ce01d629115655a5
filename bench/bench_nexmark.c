/*
 * bench_nexmark.c — `runnel-bench nexmark`: the Nexmark benchmark (an online
 * auction: people register, open auctions and bid) as the yardstick of the
 * stream-SQL engine. A seeded generator writes the three event kinds into
 * topics `person`, `auction` and `bid` of a data directory, declares a stream
 * over auction and bid and a table over person (looked up by id: q3), and
 * runs the standard queries the dialect expresses, timed per
 * core (CPU time of the process, so a busy machine does not flatter or hurt
 * the figure).
 *
 *   runnel-bench nexmark [--events N] [--seed S] [--queues Q] [--rate R]
 *                        [--query q0,q1,...] [--dir DIR] [--json]
 *   runnel-bench nexmark --generate DIR [--events N] [--seed S] [--queues Q]
 *   runnel-bench nexmark --list      every query: name, runs|absent, SQL or why
 *
 * The generator follows the published model (Beam's and Flink's Nexmark):
 * events in proportion person:auction:bid = 1:3:46, ids from 1000, event n
 * at base + n / rate seconds; an auction's seller and a bid's bidder are a
 * "hot" person with probability 3/4 (else one of the 1,000 most recent),
 * a bid's auction a hot auction with probability 1/2 (else one of the 100
 * most recent), prices 10^(6u) * 100 cents, five categories from 10, half
 * the bids on four hot channels (Google, Facebook, Baidu, Apple) and the
 * rest on channel-N with channel_id=N in their URL, and an `extra` field
 * padding people, auctions and bids to about 200, 500 and 100 bytes of
 * JSON. It is our own implementation of that description, seeded, so the
 * same seed gives the same events on every machine; it does not reproduce
 * Beam's random sequence.
 *
 * Invariants:
 *  1. Deterministic: the events depend only on --seed, --events and
 *     --rate; --queues only routes them (person and auction by id, bid by
 *     auction), so each queue holds its events in time order.
 *  2. Every query of the table is either run (its SQL is what `--list`
 *     prints, and what the test suite checks against an independent
 *     computation, tests/nexmark/oracle.py) or marked absent with the
 *     construct it needs; nothing is skipped silently.
 *  3. A timed run counts only the query: generation, the stream
 *     declarations and one untimed warm-up run come first.
 */
#include "batch/batch.h"
#include "bench/bench.h"
#include "common/error.h"
#include "common/sys.h"
#include "logical-queues/datadir.h"
#include "streamsql/sql.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NX_CMD "nexmark"

/* ---- the model ----------------------------------------------------------------- */

#define NX_PERSON_PROP   1
#define NX_AUCTION_PROP  3
#define NX_TOTAL_PROP    50        /* person + auction + bid (46) */
#define NX_FIRST_ID      1000      /* first person id and first auction id */
#define NX_FIRST_CAT     10
#define NX_NUM_CATS      5
#define NX_ACTIVE_PEOPLE 1000      /* bidders and sellers are drawn from the newest */
#define NX_INFLIGHT      100       /* auctions a bid may name besides the hot ones */
#define NX_ID_LEAD       10        /* ids may run this far ahead of the newest */
#define NX_HOT_RATIO     100       /* hot ids are multiples of this (base 0) */
#define NX_CHANNELS      10000
#define NX_BASE_MS       1700000000000ll   /* 2023-11-14T22:13:20Z */

enum { NX_PERSON, NX_AUCTION, NX_BID, NX_KINDS };
static const char *const nx_topic[NX_KINDS] = {"person", "auction", "bid"};
static const int nx_avg_bytes[NX_KINDS] = {200, 500, 100};

static const char *const first_names[] = {"Peter", "Paul", "Luke", "John", "Saul", "Vicky",
                                          "Kate", "Julie", "Sarah", "Deiter", "Walter"};
static const char *const last_names[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                         "Walton", "Smith", "Jones", "Noris"};
static const char *const states[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
static const char *const cities[] = {"Phoenix", "Los Angeles", "San Francisco", "Boise",
                                     "Portland", "Bend", "Redmond", "Seattle", "Kent",
                                     "Cheyenne"};
static const char *const hot_channels[] = {"Google", "Facebook", "Baidu", "Apple"};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct nx_gen {
    bench_rng_t rng;
    uint64_t    n;                 /* the next event's number */
    uint64_t    inter_ns;          /* nanoseconds between events */
    char        hot_urls[4][96];   /* one fixed URL per hot channel */
} nx_gen_t;

/* The newest person (base 0) as of event n. */
static uint64_t last_person(uint64_t n)
{
    return n / NX_TOTAL_PROP * NX_PERSON_PROP;
}

/* The newest auction (base 0) as of event n. */
static uint64_t last_auction(uint64_t n)
{
    uint64_t epoch = n / NX_TOTAL_PROP, off = n % NX_TOTAL_PROP;
    if (off < NX_PERSON_PROP) {
        if (epoch == 0) return 0;
        return (epoch - 1) * NX_AUCTION_PROP + NX_AUCTION_PROP - 1;
    }
    off -= NX_PERSON_PROP;
    if (off >= NX_AUCTION_PROP) off = NX_AUCTION_PROP - 1;
    return epoch * NX_AUCTION_PROP + off;
}

static uint64_t some_person(nx_gen_t *g, uint64_t n)
{
    uint64_t people = last_person(n) + 1;
    uint64_t active = people < NX_ACTIVE_PEOPLE ? people : NX_ACTIVE_PEOPLE;
    return people - active + bench_rng_below(&g->rng, active + NX_ID_LEAD);
}

static uint64_t some_auction(nx_gen_t *g, uint64_t n)
{
    uint64_t hi = last_auction(n), lo = hi > NX_INFLIGHT ? hi - NX_INFLIGHT : 0;
    return lo + bench_rng_below(&g->rng, hi - lo + 1 + NX_ID_LEAD);
}

/* Random lowercase text of exactly len bytes, a space now and then; sep
 * replaces the spaces when not 0. */
static size_t put_text(nx_gen_t *g, char *p, size_t len, char sep)
{
    for (size_t i = 0; i < len; i++) {
        uint64_t r = bench_rng_below(&g->rng, 27);
        p[i] = r == 26 && i > 0 && i + 1 < len ? (sep ? sep : ' ') : (char)('a' + r % 26);
    }
    return len;
}

/* Text of 3..max bytes. */
static size_t put_string(nx_gen_t *g, char *p, size_t max, char sep)
{
    return put_text(g, p, 3 + bench_rng_below(&g->rng, max - 2), sep);
}

static size_t put_base_url(nx_gen_t *g, char *p)
{
    size_t n = (size_t)sprintf(p, "https://www.nexmark.com/");
    for (int k = 0; k < 3; k++) {
        n += put_string(g, p + n, 5, '_');
        p[n++] = '/';
    }
    n += (size_t)sprintf(p + n, "item.htm?query=1");
    return n;
}

static int64_t price(nx_gen_t *g)
{
    double u = (double)(bench_rng_next(&g->rng) >> 11) / 9007199254740992.0;
    return llround(pow(10.0, u * 6.0) * 100.0);
}

static void nx_init(nx_gen_t *g, uint64_t seed, uint64_t rate)
{
    memset(g, 0, sizeof *g);
    bench_rng_seed(&g->rng, seed);
    g->inter_ns = 1000000000ull / rate;
    for (int k = 0; k < 4; k++) {
        size_t n = put_base_url(g, g->hot_urls[k]);
        g->hot_urls[k][n] = 0;
    }
}

/* Close the JSON object in buf[0..n) with an "extra" field padding it to
 * about the kind's average size (+-20 %). */
static size_t put_extra(nx_gen_t *g, char *buf, size_t n, int kind)
{
    size_t want = (size_t)nx_avg_bytes[kind], pad = 0;
    n += (size_t)sprintf(buf + n, ",\"extra\":\"");
    if (n + 2 < want) {
        size_t room = want - n - 2, delta = room / 5;
        pad = room - delta + bench_rng_below(&g->rng, 2 * delta + 1);
    }
    n += put_text(g, buf + n, pad, 0);
    n += (size_t)sprintf(buf + n, "\"}");
    return n;
}

/* The next event as JSON into buf (at least 1024 bytes): its kind, length,
 * time and routing id. */
static int nx_next(nx_gen_t *g, char *buf, size_t *len, int64_t *ts, uint64_t *route)
{
    uint64_t n = g->n++;
    uint64_t off = n % NX_TOTAL_PROP;
    int64_t t = NX_BASE_MS + (int64_t)(n * g->inter_ns / 1000000);
    size_t k;
    int kind;
    *ts = t;
    if (off < NX_PERSON_PROP) {
        kind = NX_PERSON;
        uint64_t id = NX_FIRST_ID + last_person(n);
        *route = id;
        k = (size_t)sprintf(buf, "{\"id\":%llu,\"name\":\"%s %s\",\"emailAddress\":\"",
                            (unsigned long long)id,
                            first_names[bench_rng_below(&g->rng, NELEM(first_names))],
                            last_names[bench_rng_below(&g->rng, NELEM(last_names))]);
        k += put_string(g, buf + k, 7, '_');
        buf[k++] = '@';
        k += put_string(g, buf + k, 5, '_');
        k += (size_t)sprintf(buf + k, ".com\",\"creditCard\":\"%04llu %04llu %04llu %04llu\","
                             "\"city\":\"%s\",\"state\":\"%s\",\"dateTime\":%lld",
                             (unsigned long long)bench_rng_below(&g->rng, 10000),
                             (unsigned long long)bench_rng_below(&g->rng, 10000),
                             (unsigned long long)bench_rng_below(&g->rng, 10000),
                             (unsigned long long)bench_rng_below(&g->rng, 10000),
                             cities[bench_rng_below(&g->rng, NELEM(cities))],
                             states[bench_rng_below(&g->rng, NELEM(states))], (long long)t);
    } else if (off < NX_PERSON_PROP + NX_AUCTION_PROP) {
        kind = NX_AUCTION;
        uint64_t id = NX_FIRST_ID + last_auction(n);
        uint64_t seller = bench_rng_below(&g->rng, 4) > 0
            ? last_person(n) / NX_HOT_RATIO * NX_HOT_RATIO : some_person(g, n);
        int64_t initial = price(g), reserve = initial + price(g);
        /* about NX_INFLIGHT auctions open at a time */
        uint64_t avg_ms = NX_INFLIGHT * NX_TOTAL_PROP / NX_AUCTION_PROP * g->inter_ns / 1000000;
        int64_t expires = t + 1 + (int64_t)(avg_ms / 2 + bench_rng_below(&g->rng, avg_ms + 1));
        *route = id;
        k = (size_t)sprintf(buf, "{\"id\":%llu,\"itemName\":\"", (unsigned long long)id);
        k += put_string(g, buf + k, 20, 0);
        k += (size_t)sprintf(buf + k, "\",\"description\":\"");
        k += put_string(g, buf + k, 100, 0);
        k += (size_t)sprintf(buf + k, "\",\"initialBid\":%lld,\"reserve\":%lld,\"dateTime\":%lld,"
                             "\"expires\":%lld,\"seller\":%llu,\"category\":%llu",
                             (long long)initial, (long long)reserve, (long long)t,
                             (long long)expires, (unsigned long long)(NX_FIRST_ID + seller),
                             (unsigned long long)(NX_FIRST_CAT +
                                                  bench_rng_below(&g->rng, NX_NUM_CATS)));
    } else {
        kind = NX_BID;
        uint64_t auction = bench_rng_below(&g->rng, 2) > 0
            ? last_auction(n) / NX_HOT_RATIO * NX_HOT_RATIO : some_auction(g, n);
        uint64_t bidder = bench_rng_below(&g->rng, 4) > 0
            ? last_person(n) / NX_HOT_RATIO * NX_HOT_RATIO + 1 : some_person(g, n);
        int64_t p = price(g);
        *route = NX_FIRST_ID + auction;
        k = (size_t)sprintf(buf, "{\"auction\":%llu,\"bidder\":%llu,\"price\":%lld,\"channel\":\"",
                            (unsigned long long)(NX_FIRST_ID + auction),
                            (unsigned long long)(NX_FIRST_ID + bidder), (long long)p);
        if (bench_rng_below(&g->rng, 2) > 0) {
            uint64_t h = bench_rng_below(&g->rng, 4);
            k += (size_t)sprintf(buf + k, "%s\",\"url\":\"%s", hot_channels[h], g->hot_urls[h]);
        } else {
            uint64_t c = bench_rng_below(&g->rng, NX_CHANNELS);
            k += (size_t)sprintf(buf + k, "channel-%llu\",\"url\":\"", (unsigned long long)c);
            k += put_base_url(g, buf + k);
            k += (size_t)sprintf(buf + k, "&channel_id=%llu", (unsigned long long)c);
        }
        k += (size_t)sprintf(buf + k, "\",\"dateTime\":%lld", (long long)t);
    }
    *len = put_extra(g, buf, k, kind);
    return kind;
}

/* ---- the queries --------------------------------------------------------------- */

static const char *const nx_streams[NX_KINDS] = {
    /* a table: people are looked up by id (q3), the latest record per id */
    "CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT, emailAddress TEXT, "
    "creditCard TEXT, city TEXT, state TEXT, dateTime INTEGER, extra TEXT) "
    "WITH (topic = 'person', format = 'json')",
    "CREATE STREAM auction (id INTEGER, itemName TEXT, description TEXT, initialBid INTEGER, "
    "reserve INTEGER, dateTime INTEGER, expires INTEGER, seller INTEGER, category INTEGER, "
    "extra TEXT) WITH (topic = 'auction', timestamp = 'dateTime')",
    "CREATE STREAM bid (auction INTEGER, bidder INTEGER, price INTEGER, channel TEXT, "
    "url TEXT, dateTime INTEGER, extra TEXT) WITH (topic = 'bid', timestamp = 'dateTime')",
};

/* Declared beside them: person as a stream too (q8's window join), auction as
 * a table too (q20 looks each bid's auction up by id). */
static const char *const nx_extra[] = {
    "CREATE STREAM person_s (id INTEGER, name TEXT, emailAddress TEXT, creditCard TEXT, "
    "city TEXT, state TEXT, dateTime INTEGER, extra TEXT) "
    "WITH (topic = 'person', timestamp = 'dateTime')",
    "CREATE TABLE auction_t (id INTEGER PRIMARY KEY, itemName TEXT, description TEXT, "
    "initialBid INTEGER, reserve INTEGER, dateTime INTEGER, expires INTEGER, seller INTEGER, "
    "category INTEGER, extra TEXT) WITH (topic = 'auction', format = 'json')",
};

/* The hour of day (UTC) of dateTime, for q14. */
#define NX_HOUR "CAST(strftime('%H', dateTime / 1000, 'unixepoch') AS INTEGER)"
#define NX_DAY  "strftime('%Y-%m-%d', dateTime / 1000, 'unixepoch')"

typedef struct nx_query {
    const char *name;
    const char *what;      /* the query's meaning in a few words */
    const char *sql;       /* NULL: absent */
    const char *absent;    /* why, when sql is NULL */
    int         windowed;  /* stateful (Flink's 12-22 k/core class) */
} nx_query_t;

static const nx_query_t nx_queries[] = {
    {"q0", "pass-through", "SELECT auction, bidder, price, dateTime, extra FROM bid", NULL, 0},
    {"q1", "currency conversion",
     "SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid", NULL, 0},
    {"q2", "selection", "SELECT auction, price FROM bid WHERE auction % 123 = 0", NULL, 0},
    {"q3", "local item suggestion",
     "SELECT p.name, p.city, p.state, a.id FROM auction a JOIN person p ON a.seller = p.id "
     "WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA')", NULL, 0},
    {"q4", "average price per category", NULL,
     "a join of auction with bid and an aggregate over its result", 0},
    /* Flink's join of the counts with their window's maximum is a RANK() = 1: every
     * auction whose count is the window's largest (ties kept) */
    {"q5", "hot items",
     "SELECT auction, num FROM (SELECT auction, num, RANK() OVER (PARTITION BY window_start, "
     "window_end ORDER BY num DESC) AS rk FROM (SELECT auction, count(*) AS num, window_start, "
     "window_end FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '10' "
     "SECOND)) GROUP BY auction, window_start, window_end)) WHERE rk <= 1", NULL, 1},
    {"q6", "average selling price per seller", NULL,
     "a join of auction with bid and OVER (ROWS 10 PRECEDING)", 0},
    /* Flink's join of each bid with its window's maximum price is a RANK() = 1 over the
     * window's bids (ties kept); a bid at exactly a window's end is in the next window
     * only (Flink's BETWEEN also matches it to the one before) */
    {"q7", "highest bid",
     "SELECT auction, price, bidder, dateTime, extra FROM (SELECT window_start, window_end, "
     "auction, price, bidder, dateTime, extra, RANK() OVER (PARTITION BY window_start, "
     "window_end ORDER BY price DESC) AS rk FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), "
     "INTERVAL '10' SECOND))) WHERE rk <= 1", NULL, 1},
    /* Flink's join of the two GROUP BY subqueries (distinct people, distinct sellers per
     * window) is a window join with DISTINCT */
    {"q8", "monitor new users",
     "SELECT DISTINCT p.id, p.name, p.window_start AS starttime FROM "
     "TABLE(TUMBLE(TABLE person_s, DESCRIPTOR(ts), INTERVAL '10' SECOND)) p JOIN "
     "TABLE(TUMBLE(TABLE auction, DESCRIPTOR(ts), INTERVAL '10' SECOND)) a "
     "ON p.window_start = a.window_start AND p.window_end = a.window_end AND p.id = a.seller",
     NULL, 1},
    {"q9", "winning bids", NULL, "a join of auction with bid whose interval bounds are "
     "columns (b.dateTime BETWEEN a.dateTime AND a.expires: no constant bound, so unbounded "
     "state, refused), then a TopN (ROW_NUMBER) over the joined rows", 0},
    {"q10", "log to file system",
     "SELECT auction, bidder, price, dateTime, extra, " NX_DAY " AS dt, "
     "strftime('%H:%M', dateTime / 1000, 'unixepoch') AS hm FROM bid", NULL, 0},
    {"q11", "user sessions",
     "SELECT bidder, count(*) AS bid_count, window_start, window_end FROM bid "
     "GROUP BY SESSION(ts, '10s'), bidder", NULL, 1},
    {"q12", "processing-time windows",
     "SELECT bidder, count(*) AS bid_count, window_start, window_end FROM "
     "TABLE(TUMBLE(TABLE bid, DESCRIPTOR(proctime), INTERVAL '10' SECOND)) "
     "GROUP BY bidder, window_start, window_end", NULL, 1},
    {"q13", "bounded side input join", NULL,
     "a side-input file, which the generator does not write (the static table join runs)", 0},
    {"q14", "calculation",
     "SELECT auction, bidder, 0.908 * price AS price, CASE WHEN " NX_HOUR " >= 8 AND "
     NX_HOUR " <= 18 THEN 'dayTime' WHEN " NX_HOUR " <= 6 OR " NX_HOUR " >= 20 THEN "
     "'nightTime' ELSE 'otherTime' END AS bidTimeType, dateTime, extra, "
     "length(extra) - length(replace(extra, 'c', '')) AS c_counts FROM bid "
     "WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000", NULL, 0},
    {"q15", "bidding statistics per day",
     "SELECT window_start AS day, count(*) AS total_bids, "
     "count(*) FILTER (WHERE price < 10000) AS rank1_bids, "
     "count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, "
     "count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, "
     "count(DISTINCT bidder) AS total_bidders, "
     "count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, "
     "count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders, "
     "count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders, "
     "count(DISTINCT auction) AS total_auctions, "
     "count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions, "
     "count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) "
     "AS rank2_auctions, "
     "count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions "
     "FROM bid GROUP BY TUMBLE(ts, INTERVAL '1' DAY)", NULL, 1},
    {"q16", "channel statistics per day",
     "SELECT channel, window_start AS day, count(*) AS total_bids, "
     "count(*) FILTER (WHERE price < 10000) AS rank1_bids, "
     "count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, "
     "count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, "
     "count(DISTINCT bidder) AS total_bidders, "
     "count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders, "
     "count(DISTINCT auction) AS total_auctions, "
     "count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions "
     "FROM bid GROUP BY TUMBLE(ts, INTERVAL '1' DAY), channel", NULL, 1},
    {"q17", "auction statistics per day",
     "SELECT auction, window_start AS day, count(*) AS total_bids, "
     "count(*) FILTER (WHERE price < 10000) AS rank1_bids, "
     "count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, "
     "count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, "
     "min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, "
     "sum(price) AS sum_price FROM bid GROUP BY TUMBLE(ts, INTERVAL '1' DAY), auction", NULL, 1},
    /* Flink's q18 keeps the last bid per (bidder, auction) over the whole stream, an
     * updating result; streamsql emits final rows, so per 10 s window */
    {"q18", "last bid per bidder and auction, per 10 s window",
     "SELECT auction, bidder, price, channel, url, dateTime, extra FROM (SELECT window_start, "
     "window_end, auction, bidder, price, channel, url, dateTime, extra, ROW_NUMBER() OVER "
     "(PARTITION BY window_start, window_end, bidder, auction ORDER BY dateTime DESC) AS rn "
     "FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))) WHERE rn <= 1",
     NULL, 1},
    {"q19", "top 10 bids per auction", NULL,
     "an unwindowed TopN (ROW_NUMBER() OVER (PARTITION BY auction ...) <= 10) is an updating "
     "result (rows retract as higher bids come); streamsql emits final rows, and Nexmark "
     "defines no windowed q19", 1},
    /* auction_t, a table over the auction topic: a bounded query sees every auction */
    {"q20", "expand bid with auction",
     "SELECT auction, bidder, price, channel, url, b.dateTime, b.extra, itemName, description, "
     "initialBid, reserve, a.dateTime, expires, seller, category, a.extra FROM bid b "
     "JOIN auction_t a ON b.auction = a.id WHERE a.category = 10", NULL, 0},
    {"q21", "add channel id",
     "SELECT auction, bidder, price, channel, CASE WHEN lower(channel) = 'apple' THEN '0' "
     "WHEN lower(channel) = 'google' THEN '1' WHEN lower(channel) = 'facebook' THEN '2' "
     "WHEN lower(channel) = 'baidu' THEN '3' "
     "ELSE regexp_extract(url, '(&|^)channel_id=([^&]*)', 2) END AS channel_id FROM bid "
     "WHERE regexp_extract(url, '(&|^)channel_id=([^&]*)', 2) IS NOT NULL OR "
     "lower(channel) IN ('apple', 'google', 'facebook', 'baidu')", NULL, 0},
    {"q22", "URL directories",
     "SELECT auction, bidder, price, channel, split_index(url, '/', 3) AS dir1, "
     "split_index(url, '/', 4) AS dir2, split_index(url, '/', 5) AS dir3 FROM bid", NULL, 0},
};
#define NX_NQUERIES NELEM(nx_queries)

/* ---- configuration ---------------------------------------------------------------- */

typedef struct nx_cfg {
    uint64_t    events, seed, queues, rate;
    const char *query, *dir, *generate;
    int         list, json;
} nx_cfg_t;

static int check_list(const char *list);

static int nx_parse(int argc, char **argv, void *arg)
{
    nx_cfg_t *cfg = arg;
    cfg->events = 10000000;
    cfg->seed = 1;
    cfg->queues = 1;
    cfg->rate = 10000000;
    const bench_opt_t opts[] = {
        {"--events", BENCH_OPT_U64, &cfg->events, 50, 1000000000ull, "N"},
        {"--seed", BENCH_OPT_U64, &cfg->seed, 0, UINT64_MAX, "S"},
        {"--queues", BENCH_OPT_U64, &cfg->queues, 1, 64, "Q"},
        {"--rate", BENCH_OPT_U64, &cfg->rate, 1, 1000000000ull, "R"},
        {"--query", BENCH_OPT_STR, &cfg->query, 0, 0, "LIST"},
        {"--dir", BENCH_OPT_STR, &cfg->dir, 0, 0, "DIR"},
        {"--generate", BENCH_OPT_STR, &cfg->generate, 0, 0, "DIR"},
        {"--list", BENCH_OPT_FLAG, &cfg->list, 0, 0, ""},
        {"--json", BENCH_OPT_FLAG, &cfg->json, 0, 0, ""},
    };
    int rc = bench_parse_flags(NX_CMD, argc, argv, opts, NELEM(opts));
    return rc == 0 ? check_list(cfg->query) : rc;
}

/* ---- generation ------------------------------------------------------------------- */

typedef struct nx_out {
    rn_datadir_queue_t q;
    rn_batch_builder_t b;
    int                open;
} nx_out_t;

static int flush_out(rn_datadir_t *d, nx_out_t *o, char *err)
{
    const uint8_t *batch;
    size_t len;
    int64_t base;
    uint64_t ticket;
    if (rn_batch_builder_count(&o->b) == 0) return 0;
    int rc = rn_batch_builder_finish(&o->b, &batch, &len);
    if (rc == 0) rc = rn_datadir_append(d, &o->q, batch, len, &base, &ticket, err);
    rn_batch_builder_reset(&o->b);
    return rc;
}

/* Write cfg->events events into d's topics person, auction and bid (created
 * with cfg->queues queues) and declare their streams. */
static int generate(rn_datadir_t *d, const nx_cfg_t *cfg, uint64_t count[NX_KINDS], char *err)
{
    uint32_t nq = (uint32_t)cfg->queues;
    nx_out_t *out = calloc((size_t)NX_KINDS * nq, sizeof *out);
    if (!out) return rn_errf(err, -ENOMEM, "out of memory");
    rn_batch_opts_t bo;
    rn_batch_opts_default(&bo);
    bo.max_bytes = 64u << 10;
    int rc = 0;
    for (int k = 0; k < NX_KINDS && rc == 0; k++) {
        rc = rn_datadir_topic_create(d, nx_topic[k], nq, NULL, err);
        for (uint32_t i = 0; i < nq && rc == 0; i++) {
            nx_out_t *o = &out[(size_t)k * nq + i];
            rc = rn_datadir_queue_open(d, nx_topic[k], i, &o->q, err);
            if (rc == 0) {
                o->open = 1;
                rc = rn_batch_builder_init(&o->b, &bo);
                if (rc != 0) o->open = 0, rn_datadir_queue_close(&o->q);
            }
        }
    }
    nx_gen_t g;
    nx_init(&g, cfg->seed, cfg->rate);
    char buf[1024];
    memset(count, 0, NX_KINDS * sizeof count[0]);
    for (uint64_t i = 0; i < cfg->events && rc == 0; i++) {
        size_t len;
        int64_t ts;
        uint64_t route;
        int kind = nx_next(&g, buf, &len, &ts, &route);
        nx_out_t *o = &out[(size_t)kind * nq + route % nq];
        rn_record_t r = {.timestamp = ts, .key_len = -1, .value = (const uint8_t *)buf,
                         .value_len = (int32_t)len};
        rc = rn_batch_builder_add(&o->b, &r);
        if (rc == RN_EFULL) {
            rc = flush_out(d, o, err);
            if (rc == 0) rc = rn_batch_builder_add(&o->b, &r);
        }
        count[kind]++;
    }
    for (size_t i = 0; i < (size_t)NX_KINDS * nq; i++) {
        if (!out[i].open) continue;
        if (rc == 0) rc = flush_out(d, &out[i], err);
        rn_batch_builder_destroy(&out[i].b);
        rn_datadir_queue_close(&out[i].q);
    }
    free(out);
    for (int k = 0; k < NX_KINDS && rc == 0; k++) rc = bench_sql_count(d, nx_streams[k], NULL, NULL,
                                                                       err);
    for (size_t k = 0; k < NELEM(nx_extra) && rc == 0; k++)
        rc = bench_sql_count(d, nx_extra[k], NULL, NULL, err);
    return rc;
}

static int open_dir(const char *path, int create, rn_datadir_t **d, char *err)
{
    rn_datadir_opts_t o;
    rn_datadir_opts_default(&o);
    o.create = create;
    o.holder = "runnel-bench nexmark";
    o.log.fsync = RN_FSYNC_NEVER;
    return rn_datadir_open(path, &o, d, err);
}

/* ---- running ---------------------------------------------------------------------- */

static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Is query q named in the comma-separated list (NULL: every query)? */
static int wanted(const char *list, const char *name)
{
    if (!list || strcmp(list, "all") == 0) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int check_list(const char *list)
{
    if (!list || strcmp(list, "all") == 0) return 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        size_t i;
        for (i = 0; i < NX_NQUERIES; i++)
            if (strlen(nx_queries[i].name) == len && strncmp(p, nx_queries[i].name, len) == 0)
                break;
        if (i == NX_NQUERIES)
            return bench_fail(NX_CMD, RN_EINVAL, "--query: unknown query '%.*s'; the queries "
                              "are q0..q22 (--list shows them)", (int)len, p);
        if (!nx_queries[i].sql)
            return bench_fail(NX_CMD, RN_EINVAL, "--query: %s does not run: it needs %s",
                              nx_queries[i].name, nx_queries[i].absent);
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static void list_queries(void)
{
    for (size_t i = 0; i < NX_NQUERIES; i++) {
        const nx_query_t *q = &nx_queries[i];
        if (q->sql) printf("%s\truns\t%s\n", q->name, q->sql);
        else printf("%s\tabsent\tneeds %s\n", q->name, q->absent);
    }
}

static int nx_run(const void *arg)
{
    const nx_cfg_t *cfg = arg;
    char root[PATH_MAX], data[PATH_MAX + 16], err[RN_ERRMSG_SIZE] = "";
    uint64_t count[NX_KINDS];
    rn_datadir_t *d = NULL;
    int rc;
    if (cfg->list) {
        list_queries();
        return 0;
    }
    if (cfg->generate) {
        if ((rc = open_dir(cfg->generate, 1, &d, err)) == 0) rc = generate(d, cfg, count, err);
        int crc = rn_datadir_close(d);
        if (rc == 0 && crc != 0) rc = rn_errf(err, crc, "closing: %s", rn_strerror(crc));
        if (rc != 0) return bench_fail(NX_CMD, rc, "%s: %s", cfg->generate, err);
        fprintf(stderr, "nexmark: %llu people, %llu auctions, %llu bids in %s (seed %llu)\n",
                (unsigned long long)count[NX_PERSON], (unsigned long long)count[NX_AUCTION],
                (unsigned long long)count[NX_BID], cfg->generate,
                (unsigned long long)cfg->seed);
        return 0;
    }
    if ((rc = bench_mkdtemp(cfg->dir, root, sizeof root)) != 0)
        return bench_fail(NX_CMD, rc, "cannot create a scratch directory: %s", rn_strerror(rc));
    snprintf(data, sizeof data, "%s/data", root);
    bench_note(cfg->json, "nexmark: %llu events, seed %llu, %llu queue(s) per topic, %llu "
               "events/s of event time, in %s", (unsigned long long)cfg->events,
               (unsigned long long)cfg->seed, (unsigned long long)cfg->queues,
               (unsigned long long)cfg->rate, root);
    if ((rc = open_dir(data, 1, &d, err)) != 0 || (rc = generate(d, cfg, count, err)) != 0)
        goto out;
    rc = rn_datadir_close(d);
    d = NULL;
    if (rc == 0) rc = bench_settle_fs(root);
    if (rc != 0 || (rc = open_dir(data, 0, &d, err)) != 0) goto out;
    bench_table_t t;
    bench_table_init(&t, 6);
    bench_table_cell(&t, "query");
    bench_table_cell(&t, "records in");
    bench_table_cell(&t, "rows out");
    bench_table_cell(&t, "wall s");
    bench_table_cell(&t, "cpu s");
    bench_table_cell(&t, "records/s per core");
    for (size_t i = 0; i < NX_NQUERIES && rc == 0; i++) {
        const nx_query_t *q = &nx_queries[i];
        if (!q->sql || !wanted(cfg->query, q->name)) continue;
        uint64_t rows = 0;
        rn_sql_stats_t st;
        if ((rc = bench_sql_count(d, q->sql, &rows, &st, err)) != 0) break;   /* warm-up */
        rows = 0;
        uint64_t w0 = rn_mono_ns(), c0 = cpu_ns();
        if ((rc = bench_sql_count(d, q->sql, &rows, &st, err)) != 0) break;
        uint64_t wall = rn_mono_ns() - w0, cpu = cpu_ns() - c0;
        if (st.errors || st.late) {
            rc = rn_errf(err, RN_ECORRUPT, "%s: %llu records rejected, %llu late (first: %s)",
                         q->name, (unsigned long long)st.errors,
                         (unsigned long long)st.late, st.first_error);
            break;
        }
        double per_core = cpu ? (double)st.records / ((double)cpu / 1e9) : 0;
        if (cfg->json) {
            bench_json_t j;
            bench_json_begin(&j, stdout);
            bench_json_str(&j, "bench", "nexmark");
            bench_json_str(&j, "query", q->name);
            bench_json_u64(&j, "events", cfg->events);
            bench_json_u64(&j, "records", st.records);
            bench_json_u64(&j, "rows", rows);
            bench_json_f64(&j, "wall_s", (double)wall / 1e9);
            bench_json_f64(&j, "cpu_s", (double)cpu / 1e9);
            bench_json_f64(&j, "records_per_s_per_core", per_core);
            bench_json_end(&j);
        }
        bench_table_cell(&t, "%s %s", q->name, q->what);
        bench_table_cell(&t, "%llu", (unsigned long long)st.records);
        bench_table_cell(&t, "%llu", (unsigned long long)rows);
        bench_table_cell(&t, "%.3f", (double)wall / 1e9);
        bench_table_cell(&t, "%.3f", (double)cpu / 1e9);
        bench_table_cell(&t, "%.0f", per_core);
    }
    if (rc == 0 && !cfg->json) {
        bench_table_print(&t, stdout);
        printf("Absent (the construct each needs):");
        for (size_t i = 0; i < NX_NQUERIES; i++)
            if (!nx_queries[i].sql) printf(" %s (%s);", nx_queries[i].name, nx_queries[i].absent);
        printf("\n");
    }
    bench_table_free(&t);
out:
    if (rc != 0) bench_fail(NX_CMD, rc, "%s", err[0] ? err : rn_strerror(rc));
    rn_datadir_close(d);
    bench_rmtree(root);
    return rc;
}

const bench_cmd_t bench_cmd_nexmark = {
    .name = NX_CMD,
    .usage = "[--events N] [--seed S] [--queues Q] [--rate R] [--query q0,q1,...] [--dir DIR] "
             "[--json] | --generate DIR | --list",
    .cfg_size = sizeof(nx_cfg_t),
    .parse = nx_parse,
    .run = nx_run,
};
