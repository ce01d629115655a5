/*
 * test_streamsql_fn.c — streamsql's own scalar functions (streamsql/fn.c):
 * regular expressions, split_part/split_index, the time functions and
 * proctime, each checked against an independent computation: python3's
 * re, str.split and datetime run over the same records (a seeded corpus,
 * the seed printed, RN_SEED=N repeats a run); then bad arguments (wrong
 * types, NULLs, bad and catastrophic patterns) with the error expected.
 */
#include "tests/test_streamsql_util.h"

#include "logical-queues/meta.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

#define NREC 400

static uint64_t rng;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static int pick(int n) { return (int)(next_rand() % (uint64_t)n); }

static char corpus_path[96];

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The python3 oracle: argv[1] the corpus (JSON lines), argv[2] the query's
 * name; prints the rows as the test's collect_row formats them. */
static const char oracle_py[] =
    "import sys, json, re, datetime as dt\n"
    "recs = [json.loads(l) for l in open(sys.argv[1])]\n"
    "E = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)\n"
    "def f(v):\n"
    "    if v is None: return 'NULL'\n"
    "    if v is True: return '1'\n"
    "    if v is False: return '0'\n"
    "    if isinstance(v, float): return '%.6g' % v\n"
    "    return str(v)\n"
    "def grp(m, g):\n"
    "    return None if m is None else m.group(g)\n"
    "def at(ms):\n"
    "    return E + dt.timedelta(milliseconds=ms)\n"
    "def iso(s):\n"
    "    d = dt.datetime.fromisoformat(s)\n"
    "    if d.tzinfo is None: d = d.replace(tzinfo=dt.timezone.utc)\n"
    "    return (d - E) // dt.timedelta(milliseconds=1)\n"
    "def sp(s, d, n):\n"
    "    p = s.split(d)\n"
    "    if n < 0: n = len(p) + n + 1\n"
    "    return p[n - 1] if 1 <= n <= len(p) else ''\n"
    "def si(s, d, i):\n"
    "    p = s.split(d)\n"
    "    return p[i] if i < len(p) else None\n"
    "q = sys.argv[2]\n"
    "for r in (recs if q not in ('evwin', 'stats') else []):\n"
    "    m, t, a = r.get('msg'), r['t'], r['at']\n"
    "    if q == 'regex':\n"
    "        row = [None if m is None else re.search(r'^(GET|POST) /api/', m) is not None,\n"
    "               None if m is None else grp(re.search(r'/([a-z]+)/(\\d+)', m), 2),\n"
    "               None if m is None else grp(re.search(r'/([a-z]+)/(\\d+)', m), 0),\n"
    "               None if m is None else re.sub(r'\\d+', '#', m),\n"
    "               None if m is None else re.sub(r'(\\w+)=(\\w+)', r'\\2:\\1', m),\n"
    "               None if m is None else re.search(r'x{2,}|é', m) is not None]\n"
    "    elif q == 'split':\n"
    "        row = [None if m is None else sp(m, ' ', 2), None if m is None else sp(m, '/', -1),\n"
    "               None if m is None else si(m, '/', 3), None if m is None else sp(m, ' ', 9)]\n"
    "    elif q == 'time':\n"
    "        d = at(t)\n"
    "        row = [d.strftime('%Y-%m-%d %H:%M:%S.') + '%03d' % (d.microsecond // 1000),\n"
    "               d.hour, d.minute, d.day, at(t // 1000 * 1000).strftime('%Y-%m-%d %H:%M:%S'),\n"
    "               iso(a), d.strftime('%d/%m/%Y %H:%M:%S')]\n"
    "    elif q == 'evtime':\n"
    "        row = [iso(a), a]\n"
    "    print('|'.join(f(v) for v in row))\n"
    "if q == 'stats':\n"
    "    import statistics as st\n"
    "    wins = {}\n"
    "    for r in recs:\n"
    "        w = r['ts'] // 2000 * 2000\n"
    "        wins.setdefault(w, {}).setdefault(r['g'], []).append(r)\n"
    "    def sd(v, pop, var):\n"
    "        if len(v) < (1 if pop else 2): return None\n"
    "        if var: return st.pvariance(v) if pop else st.variance(v)\n"
    "        return st.pstdev(v) if pop else st.stdev(v)\n"
    "    for w in sorted(wins):\n"
    "        for g, rs in wins[w].items():\n"
    "            xs = [r['x'] for r in rs if r.get('x') is not None]\n"
    "            fn = [r['n'] for r in rs if r.get('x') is not None and r['x'] > 0.5]\n"
    "            ev = [r['x'] for r in rs if r.get('x') is not None and r['n'] % 2 == 0]\n"
    "            row = [w, g, len(rs), sd(xs, 0, 0), sd(xs, 1, 0), sd(xs, 0, 1), sd(xs, 1, 1),\n"
    "                   sum(1 for r in rs if r['n'] > 50), sum(fn) if fn else None, sd(ev, 0, 0)]\n"
    "            print('|'.join(f(v) for v in row))\n"
    "if q == 'evwin':\n"
    "    c = {}\n"
    "    for r in recs:\n"
    "        w = iso(r['at']) // 315360000000\n"
    "        c[w] = c.get(w, 0) + 1\n"
    "    for w in c: print('%d|%d' % (w, c[w]))\n";

static char *python_rows(const char *query)
{
    char py[128], cmd[400];
    snprintf(py, sizeof py, "%s.py", corpus_path);
    FILE *fp = fopen(py, "w");
    assert_non_null(fp);
    fputs(oracle_py, fp);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s %s", py, corpus_path, query);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    rn_buf_t b = RN_BUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) rn_buf_append(&b, buf, n, 0);
    assert_int_equal(pclose(p), 0);
    rn_buf_append(&b, "", 1, 0);
    return (char *)b.data;
}

static void make_corpus(sqlfix_t *f)
{
    static const char *const methods[] = {"GET", "POST", "PUT"};
    static const char *const words[] = {"users", "orders", "static", "api", "xx", "café"};
    static const char *const zones[] = {"Z", "+02:00", "-0530", "", "+00:00", "-11:45"};
    const char *seed_env = getenv("RN_SEED");
    rng = seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL);
    if (!rng) rng = 1;
    printf("seed %llu (RN_SEED=%llu repeats this run)\n", (unsigned long long)rng,
           (unsigned long long)rng);
    topic(f, "fn", 1);
    snprintf(corpus_path, sizeof corpus_path, "%s/corpus.jsonl", f->root);
    FILE *fp = fopen(corpus_path, "w");
    assert_non_null(fp);
    trec_t *r = calloc(NREC, sizeof *r);
    char (*js)[400] = calloc(NREC, sizeof *js);
    for (int i = 0; i < NREC; i++) {
        char msg[200], iso[64];
        int64_t t = (int64_t)(next_rand() % 4102444800000ull);   /* 1970 .. 2100 */
        snprintf(msg, sizeof msg, "%s /%s/%s%d%s %d %s=%s", methods[pick(3)],
                 pick(2) ? "api" : words[pick(6)], words[pick(6)], pick(1000),
                 pick(2) ? "?q=1" : "", 200 + pick(4) * 100, words[pick(6)], words[pick(6)]);
        /* an ISO time: date only, minutes, seconds, fractions of 1..9 digits, zones */
        int y = 1971 + pick(128), mo = 1 + pick(12), d = 1 + pick(28), form = pick(5);
        int n = snprintf(iso, sizeof iso, "%04d-%02d-%02d", y, mo, d);
        if (form >= 1) n += snprintf(iso + n, sizeof iso - (size_t)n, "%c%02d:%02d",
                                     pick(2) ? 'T' : ' ', pick(24), pick(60));
        if (form >= 2) n += snprintf(iso + n, sizeof iso - (size_t)n, ":%02d", pick(60));
        if (form >= 3) {
            int nd = 1 + pick(9);
            iso[n++] = '.';
            for (int k = 0; k < nd; k++) iso[n++] = (char)('0' + pick(10));
            iso[n] = '\0';
        }
        if (form >= 1) snprintf(iso + n, sizeof iso - (size_t)n, "%s", zones[pick(6)]);
        if (i % 17 == 0)
            snprintf(js[i], sizeof js[i], "{\"t\":%lld,\"at\":\"%s\"}", (long long)t, iso);
        else
            snprintf(js[i], sizeof js[i], "{\"msg\":\"%s\",\"t\":%lld,\"at\":\"%s\"}", msg,
                     (long long)t, iso);
        fprintf(fp, "%s\n", js[i]);
        r[i].ts = 1700000000000ll + i;
        r[i].value = js[i];
    }
    fclose(fp);
    produce(f, "fn", 0, r, NREC);
    free(r);
    free(js);
    char *out, err[RN_ERRMSG_SIZE];
    int eo;
    assert_int_equal(run_sql(f, "CREATE STREAM s (msg TEXT, t INTEGER, at TEXT) WITH (topic = "
                             "'fn')", NULL, &out, &eo, err, NULL), 0);
    free(out);
}

/* One cell of each side: equal text, or two numbers printed with %.6g that
 * differ by at most one unit in their sixth digit (the engine's and Python's
 * sums may round a last bit apart, and %.6g then rounds either way). */
static int same_cell(const char *a, size_t na, const char *b, size_t nb)
{
    if (na == nb && memcmp(a, b, na) == 0) return 1;
    char x[64], y[64], *ex, *ey;
    if (na >= sizeof x || nb >= sizeof y) return 0;
    memcpy(x, a, na);
    x[na] = '\0';
    memcpy(y, b, nb);
    y[nb] = '\0';
    double u = strtod(x, &ex), v = strtod(y, &ey);
    if (na == 0 || nb == 0 || *ex || *ey) return 0;
    double m = fabs(u) > fabs(v) ? fabs(u) : fabs(v);
    return fabs(u - v) <= 1.0000001e-5 * m;
}

/* got and want hold the same rows, cell by cell (same_cell). */
static int same_rows(const char *got, const char *want)
{
    for (;;) {
        size_t na = strcspn(got, "|\n"), nb = strcspn(want, "|\n");
        if (!same_cell(got, na, want, nb) || got[na] != want[nb]) return 0;
        if (!got[na]) return 1;
        got += na + 1;
        want += nb + 1;
    }
}

static void check_query(sqlfix_t *f, const char *name, const char *sql)
{
    char *got, err[RN_ERRMSG_SIZE];
    int eo;
    rn_sql_stats_t st;
    int rc = run_sql(f, sql, NULL, &got, &eo, err, &st);
    if (rc != 0) fail_msg("%s: %s", sql, err);
    if (st.errors) fail_msg("%s: %llu rejected: %s", sql, (unsigned long long)st.errors,
                            st.first_error);
    char *want = python_rows(name);
    if (!same_rows(got, want)) {
        /* the first differing line */
        const char *a = got, *b = want;
        while (*a && *a == *b) { a++; b++; }
        while (a > got && a[-1] != '\n') { a--; b--; }
        fail_msg("%s: differs from python3 at\n  got:  %.200s\n  want: %.200s", name, a, b);
    }
    free(got);
    free(want);
}

static void test_against_python(void **state)
{
    sqlfix_t *f = *state;
    make_corpus(f);
    check_query(f, "regex",
                "SELECT regexp_like(msg, '^(GET|POST) /api/'), "
                "regexp_extract(msg, '/([a-z]+)/(\\d+)', 2), regexp_extract(msg, "
                "'/([a-z]+)/(\\d+)'), regexp_replace(msg, '\\d+', '#'), "
                "regexp_replace(msg, '(\\w+)=(\\w+)', '$2:$1'), msg REGEXP 'x{2,}|é' FROM s");
    check_query(f, "split",
                "SELECT split_part(msg, ' ', 2), split_part(msg, '/', -1), "
                "split_index(msg, '/', 3), split_part(msg, ' ', 9) FROM s");
    /* event time from the ISO-8601 field: the stream definition is stored and
     * read back by every statement */
    char *out, err[RN_ERRMSG_SIZE];
    int eo;
    if (run_sql(f, "CREATE STREAM iso (msg TEXT, t INTEGER, at TEXT) WITH (topic = 'fn', "
                "timestamp = 'at', timestamp_format = 'iso8601')", NULL, &out, &eo, err, NULL) != 0)
        fail_msg("create: %s", err);
    free(out);
    check_query(f, "evtime", "SELECT ts, at FROM iso");
    /* grouped by decade of the event time (groups in first-seen order) */
    check_query(f, "evwin", "SELECT ts / 315360000000, count(*) FROM iso GROUP BY ts / 315360000000");
    check_query(f, "time",
                "SELECT date_format(t, '%Y-%m-%d %H:%M:%S.%f'), hour(t), minute(t), day(t), "
                "from_unixtime(t / 1000), to_timestamp(at), "
                "date_format(to_timestamp(date_format(t, '%d/%m/%Y %H:%M:%S'), "
                "'%d/%m/%Y %H:%M:%S'), '%d/%m/%Y %H:%M:%S') FROM s");
}

/* One-row results of constant expressions (over a one-record topic). */
static void want_value(sqlfix_t *f, const char *expr, const char *want)
{
    char sql[512], *got, err[RN_ERRMSG_SIZE];
    int eo;
    rn_sql_stats_t st;
    snprintf(sql, sizeof sql, "SELECT %s FROM one", expr);
    if (run_sql(f, sql, NULL, &got, &eo, err, &st) != 0) fail_msg("%s: %s", sql, err);
    if (st.errors) fail_msg("%s: rejected: %s", sql, st.first_error);
    char w[256];
    snprintf(w, sizeof w, "%s\n", want);
    if (strcmp(got, w) != 0) fail_msg("%s: got '%s', want '%s'", expr, got, want);
    free(got);
}

/* The record is rejected (counted, first_error holding msg). */
static void want_reject(sqlfix_t *f, const char *expr, const char *msg)
{
    char sql[512], *got, err[RN_ERRMSG_SIZE];
    int eo;
    rn_sql_stats_t st;
    snprintf(sql, sizeof sql, "SELECT %s FROM one", expr);
    if (run_sql(f, sql, NULL, &got, &eo, err, &st) != 0) fail_msg("%s: %s", sql, err);
    if (st.errors != 1 || !strstr(st.first_error, msg))
        fail_msg("%s: want the record rejected with '%s', got %llu errors: '%s' rows '%s'", expr,
                 msg, (unsigned long long)st.errors, st.first_error, got);
    free(got);
}

/* The statement fails at open with msg. */
static void want_fail(sqlfix_t *f, const char *expr, const char *msg, int off_of)
{
    char sql[512], *got, err[RN_ERRMSG_SIZE];
    int eo = -1;
    snprintf(sql, sizeof sql, "SELECT %s FROM one", expr);
    if (run_sql(f, sql, NULL, &got, &eo, err, NULL) == 0 || !strstr(err, msg))
        fail_msg("%s: want failure '%s', got '%s'", expr, msg, err);
    if (off_of >= 0 && eo != (int)strlen("SELECT ") + off_of)
        fail_msg("%s: error offset %d, want %d", expr, eo, (int)strlen("SELECT ") + off_of);
    free(got);
}

static void test_edges_and_errors(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "one", 1);
    produce1(f, "one", 1, "{\"s\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"}");
    /* NULLs give NULL */
    want_value(f, "regexp_like(NULL, 'a'), regexp_extract('a', NULL), "
                    "regexp_replace('a', 'a', NULL), NULL REGEXP 'a', split_part(NULL, ',', 1), "
                    "hour(NULL), date_format(NULL, '%Y'), to_timestamp(NULL), "
                    "from_unixtime(NULL)",
                 "NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL");
    /* values worked out by hand */
    want_value(f, "regexp_extract('k=v; k2=v2', '(\\w+)=(\\w+)', 2), "
                    "regexp_extract('abc', 'x'), regexp_extract('ab', 'a(x)?b', 1), "
                    "regexp_replace('a.b.c', '\\.', '/'), 'Warn' REGEXP '(?i)^warn$'",
                 "v|NULL|NULL|a/b/c|1");
    want_value(f, "split_part('a,b,,d', ',', 3), split_part('a,b', ',', 5), "
                    "split_part('a,b', ',', -2), split_index('a,b', ',', 1), "
                    "split_index('a,b', ',', 2), split_part('abc', '', 1)",
                 "||a|b|NULL|abc");
    want_value(f, "to_timestamp('1970-01-01T00:00:00Z'), to_timestamp('1969-12-31T23:59:59.5Z'), "
                    "to_timestamp('2000-02-29T12:00:00+12:00'), "
                    "to_timestamp('01/02/2024 10:00 +0100', '%d/%m/%Y %H:%M %z'), "
                    "to_timestamp('2024-01-02 03:04:05.25', '%Y-%m-%d %H:%M:%S.%f')",
                 "0|-500|951782400000|1706778000000|1704164645250");
    want_value(f, "hour(-1), minute(-1), day(-1), date_format(-1, '%Y-%m-%dT%H:%M:%S.%f'), "
                    "from_unixtime(86400, '%Y/%m/%d')",
                 "23|59|31|1969-12-31T23:59:59.999|1970/01/02");
    want_value(f, "proctime() BETWEEN CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 60000 "
                    "AND CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 60000",
                 "1");
    /* bad constant patterns fail the statement, pointing at the pattern */
    want_fail(f, "regexp_like(value, '(a')", "bad regular expression '(a': missing closing "
                "parenthesis at offset 2", 19);
    want_fail(f, "value REGEXP '[z-a]'", "range out of order in character class", 13);
    want_fail(f, "regexp_replace(value, '*', 'x')", "quantifier does not follow a repeatable "
                "item at offset 0", 22);
    /* bad arguments reject the record, saying what is valid */
    want_reject(f, "regexp_like(json_extract(value, '$.s'), '(a+)+$')",
                  "catastrophic backtracking");
    want_reject(f, "regexp_like(value, '(' || 'a')", "missing closing parenthesis at offset 2");
    want_reject(f, "regexp_like(value, 5)", "the pattern must be text, not a number");
    want_reject(f, "regexp_extract(value, '(a)', 2)", "group 2, but the pattern has 1 group");
    want_reject(f, "regexp_extract(value, 'a', 'x')", "the group must be a whole number");
    want_reject(f, "regexp_replace('a', 'a', '$9')", "replacement");
    want_reject(f, "length(regexp_replace(json_extract(value, '$.s'), '', "
                   "substr(hex(zeroblob(20000)), 1, 40000)))", "the result would exceed 1048576");
    want_value(f, "length(regexp_replace(json_extract(value, '$.s'), 'a', "
                  "substr(hex(zeroblob(5000)), 1, 10000)))", "550001");
    want_value(f, "regexp_like('abc', lower('B')), regexp_extract('k=v', upper('(\\w)=') || "
                  "'(\\w)', 2)", "1|NULL");
    want_reject(f, "split_part(value, ',', 0)", "field numbers start at 1");
    want_reject(f, "split_part(value, ',', 'x')", "must be a whole number, not text");
    want_reject(f, "split_index(value, ',', -1)", "the index must be >= 0");
    want_reject(f, "hour(value)", "is text; it takes a time in ms since the epoch");
    want_reject(f, "date_format(1, 5)", "the format must be text");
    want_reject(f, "to_timestamp('2024-13-01')", "no such date 2024-13-01");
    want_reject(f, "to_timestamp('2024-02-30T00:00Z')", "no such date 2024-02-30");
    want_reject(f, "to_timestamp('2024-01-01T25:00')", "no such time 25:00:00");
    want_reject(f, "to_timestamp('yesterday')", "expected a date YYYY-MM-DD");
    want_reject(f, "to_timestamp('2024-01-01T00:00:00Zjunk')", "unexpected 'junk'");
    want_reject(f, "to_timestamp('2024', '%d/%m/%Y')", "does not match the format");
    want_reject(f, "to_timestamp(12)", "it takes text");
    want_reject(f, "from_unixtime('x')", "seconds since the epoch");
}

/* A record whose ISO time does not parse is rejected with a clear reason,
 * never read as time 0; CREATE STREAM refuses formats on the wrong fields. */
static void test_event_time_errors(void **state)
{
    sqlfix_t *f = *state;
    char *out, err[RN_ERRMSG_SIZE];
    int eo;
    rn_sql_stats_t st;
    topic(f, "ev", 1);
    produce1(f, "ev", 1, "{\"at\":\"2024-01-01T00:00:00.5-01:00\"}");
    produce1(f, "ev", 2, "{\"at\":\"2024-01-01T24:00:00Z\"}");
    produce1(f, "ev", 3, "{\"n\":1}");
    produce1(f, "ev", 4, "{\"at\":\"01.02.2024 10:11:12\"}");
    assert_int_equal(run_sql(f, "CREATE STREAM ev1 (at TEXT) WITH (topic = 'ev', timestamp = 'at', "
                             "timestamp_format = 'iso8601')", NULL, &out, &eo, err, NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "SELECT ts FROM ev1", NULL, &out, &eo, err, &st), 0);
    assert_string_equal(out, "1704070800500\n");
    assert_int_equal(st.errors, 3);
    if (!strstr(st.first_error, "offset 1: timestamp field 'at': cannot read "
                "'2024-01-01T24:00:00Z' as iso8601: no such time 24:00:00"))
        fail_msg("first_error: %s", st.first_error);
    free(out);
    /* a strptime pattern: the other records are the rejected ones */
    assert_int_equal(run_sql(f, "CREATE STREAM ev2 (at TEXT) WITH (topic = 'ev', timestamp = 'at', "
                             "timestamp_format = '%d.%m.%Y %H:%M:%S')", NULL, &out, &eo, err,
                             NULL), 0);
    free(out);
    assert_int_equal(run_sql(f, "SELECT ts, at FROM ev2", NULL, &out, &eo, err, &st), 0);
    assert_string_equal(out, "1706782272000|01.02.2024 10:11:12\n");
    assert_int_equal(st.errors, 3);
    if (!strstr(st.first_error, "does not match the format '%d.%m.%Y %H:%M:%S'"))
        fail_msg("first_error: %s", st.first_error);
    free(out);
    static const struct { const char *sql, *msg; } bad[] = {
        {"CREATE STREAM b1 (at INTEGER) WITH (topic = 'ev', timestamp = 'at', "
         "timestamp_format = 'iso8601')", "timestamp_format reads a TEXT field; 'at' is INTEGER"},
        {"CREATE STREAM b2 (at TEXT) WITH (topic = 'ev', timestamp = 'at')",
         "a TEXT time needs timestamp_format = 'iso8601'"},
        {"CREATE STREAM b3 (at TEXT) WITH (topic = 'ev', timestamp_format = 'iso8601')",
         "timestamp_format needs timestamp = 'field'"},
        {"CREATE STREAM b4 (at TEXT) WITH (topic = 'ev', timestamp = 'at', "
         "timestamp_format = 'yyyy-MM-dd')", "neither 'iso8601' nor a strftime-style pattern"},
        {"CREATE STREAM b5 (ts REAL) WITH (topic = 'ev', timestamp_format = 'iso8601')",
         "timestamp_format reads a TEXT field; 'ts' is REAL"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (run_sql(f, bad[i].sql, NULL, &out, &eo, err, NULL) == 0 || !strstr(err, bad[i].msg))
            fail_msg("%s: got '%s', want '%s'", bad[i].sql, err, bad[i].msg);
        free(out);
    }
    /* a TEXT field named ts with a format is the event time */
    assert_int_equal(run_sql(f, "CREATE STREAM ev3 (ts TEXT) WITH (topic = 'ev', "
                             "timestamp_format = 'iso8601')", NULL, &out, &eo, err, NULL), 0);
    free(out);
    produce1(f, "ev", 5, "{\"ts\":\"1970-01-01T00:00:02Z\"}");
    assert_int_equal(run_sql(f, "SELECT ts FROM ev3", NULL, &out, &eo, err, &st), 0);
    assert_string_equal(out, "2000\n");
    free(out);
}

static char *run_ok(sqlfix_t *f, const char *sql)
{
    char *out, err[RN_ERRMSG_SIZE];
    int eo;
    if (run_sql(f, sql, NULL, &out, &eo, err, NULL) != 0) fail_msg("%s: %s", sql, err);
    return out;
}

/* Two statements give the same EXPLAIN and the same rows. */
static void same_plan(sqlfix_t *f, const char *a, const char *b)
{
    char ea[2048], eb[2048];
    snprintf(ea, sizeof ea, "EXPLAIN %s", a);
    snprintf(eb, sizeof eb, "EXPLAIN %s", b);
    char *pa = run_ok(f, ea), *pb = run_ok(f, eb);
    if (strcmp(pa, pb) != 0) fail_msg("plans differ:\n%s\n---\n%s", pa, pb);
    assert_non_null(strstr(pa, "window: "));
    free(pa);
    free(pb);
    char *ra = run_ok(f, a), *rb = run_ok(f, b);
    if (strcmp(ra, rb) != 0) fail_msg("rows differ:\n%s\n---\n%s", ra, rb);
    assert_true(strlen(ra) > 10);
    free(ra);
    free(rb);
}

/* INTERVAL literals wherever a duration goes, and Flink's window TVFs
 * planned exactly as GROUP BY TUMBLE/HOP/SESSION (EXPLAIN and rows equal). */
static void test_intervals_and_tvf(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "w", 1);
    trec_t r[300];
    char js[300][48];
    for (int i = 0; i < 300; i++) {
        snprintf(js[i], sizeof js[i], "{\"k\":\"k%d\",\"x\":%d}", i % 3, i * 7 % 11);
        r[i].ts = 1700000000000ll + i * 37 + (i % 5 == 0 ? 900 : 0);
        r[i].key = NULL;
        r[i].value = js[i];
    }
    produce(f, "w", 0, r, 300);
    char *out = run_ok(f, "CREATE STREAM ws (k TEXT, x INTEGER) WITH (topic = 'w')");
    free(out);
    same_plan(f, "SELECT window_start, window_end, k, count(*) AS n, sum(x) FROM "
                 "TABLE(TUMBLE(TABLE ws, DESCRIPTOR(ts), INTERVAL '1' SECOND)) WHERE x > 2 "
                 "GROUP BY window_start, window_end, k",
              "SELECT window_start, window_end, k, count(*) AS n, sum(x) FROM ws WHERE x > 2 "
              "GROUP BY TUMBLE(ts, '1s'), k");
    same_plan(f, "SELECT window_start, window_end, count(*) FROM TABLE(HOP(TABLE ws, "
                 "DESCRIPTOR(ts), INTERVAL '500' MILLISECONDS, INTERVAL '2' SECONDS)) "
                 "GROUP BY window_start, window_end WITH (watermark = INTERVAL '1' SECOND)",
              "SELECT window_start, window_end, count(*) FROM ws GROUP BY HOP(ts, '2s', "
              "'500ms') WITH (watermark = '1s')");
    same_plan(f, "SELECT window_start, window_end, k, max(x) FROM TABLE(SESSION(TABLE ws, "
                 "DESCRIPTOR(ts), INTERVAL '0.2' SECOND)) GROUP BY k, window_end, window_start",
              "SELECT window_start, window_end, k, max(x) FROM ws GROUP BY SESSION(ts, 200), k");
    same_plan(f, "SELECT window_start, count(*) FROM ws GROUP BY TUMBLE(ts, INTERVAL '1' MINUTE) "
                 "WITH (idle_timeout = INTERVAL '10 seconds')",
              "SELECT window_start, count(*) FROM ws GROUP BY TUMBLE(ts, '1m') "
              "WITH (idle_timeout = '10s')");
    /* in expressions: the value in ms */
    out = run_ok(f, "SELECT ts - INTERVAL '1' HOUR - (ts - 3600000), INTERVAL '1.5' SECOND, "
                    "INTERVAL 2 MINUTES, INTERVAL '1' DAY, INTERVAL '10s' FROM ws LIMIT 1");
    assert_string_equal(out, "0|1500|120000|86400000|10000\n");
    free(out);
    /* a column named interval is still a column */
    out = run_ok(f, "CREATE STREAM wi (interval INTEGER, x INTEGER) WITH (topic = 'w')");
    free(out);
    out = run_ok(f, "SELECT interval, x FROM wi LIMIT 1");
    assert_string_equal(out, "NULL|0\n");
    free(out);
    static const struct { const char *sql, *msg; int off; } bad[] = {
        {"SELECT INTERVAL '1' MONTH FROM ws", "months and years have no fixed length", 20},
        {"SELECT INTERVAL '-1' SECOND FROM ws", "bad INTERVAL value '-1'", 16},
        {"SELECT INTERVAL '1' MINUTE TO SECOND FROM ws", "INTERVAL ... TO ... is not supported",
         27},
        {"SELECT INTERVAL '0.5' MILLISECOND FROM ws", "whole milliseconds", 16},
        {"SELECT count(*) FROM ws GROUP BY TUMBLE(ts, INTERVAL '0' SECOND)",
         "greater than zero", 44},
        {"SELECT * FROM TABLE(TUMBLE(TABLE ws, DESCRIPTOR(ts), INTERVAL '1' SECOND))",
         "is supported with GROUP BY window_start, window_end", 14},
        {"SELECT count(*) FROM TABLE(TUMBLE(TABLE ws, DESCRIPTOR(ts), INTERVAL '1' SECOND)) "
         "GROUP BY window_end, k", "write GROUP BY window_start, window_end", 91},
        {"SELECT count(*) FROM TABLE(CUMULATE(TABLE ws, DESCRIPTOR(ts), INTERVAL '1' SECOND)) "
         "GROUP BY window_start, window_end", "CUMULATE is not supported", 27},
        {"SELECT count(*) FROM TABLE(HOP(TABLE ws, DESCRIPTOR(ts), INTERVAL '1' SECOND)) "
         "GROUP BY window_start, window_end", "HOP is written FROM TABLE(HOP(TABLE s", 27},
        {"SELECT count(*) FROM TABLE(TUMBLE(TABLE ws, DESCRIPTOR(k), INTERVAL '1' SECOND)) "
         "GROUP BY window_start, window_end", "'k' is not a time column", 55},
        {"SELECT count(*) FROM TABLE(TUMBLE(TABLE ws, DESCRIPTOR(ts), INTERVAL '1' SECOND)) "
         "GROUP BY window_start, window_end, TUMBLE(ts, '1s')", "at most one window", 117},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[RN_ERRMSG_SIZE];
        int eo = -1;
        if (run_sql(f, bad[i].sql, NULL, &out, &eo, err, NULL) == 0 || !strstr(err, bad[i].msg))
            fail_msg("%s: got '%s', want '%s'", bad[i].sql, err, bad[i].msg);
        if (eo != bad[i].off) fail_msg("%s: offset %d, want %d", bad[i].sql, eo, bad[i].off);
        free(out);
    }
}

/* stddev/variance (Welford) and FILTER against python3's statistics (exact
 * fractions), one group offset by 1e9 where a naive sum of squares fails;
 * approx_count_distinct and percentile_approx against exact recomputation
 * within their stated errors; bad arguments. */
static void test_aggregates(void **state)
{
    sqlfix_t *f = *state;
    const char *seed_env = getenv("RN_SEED");
    rng = seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL) ^ 0x5eed;
    if (!rng) rng = 1;
    printf("aggregates seed %llu\n", (unsigned long long)rng);
    snprintf(corpus_path, sizeof corpus_path, "%s/stats.jsonl", f->root);
    topic(f, "ag", 1);
    enum { N = 3000 };
    static const char *const groups[] = {"a", "b", "c", "big", "one"};
    trec_t *r = calloc(N, sizeof *r);
    char (*js)[160] = calloc(N, sizeof *js);
    FILE *fp = fopen(corpus_path, "w");
    assert_non_null(fp);
    for (int i = 0; i < N; i++) {
        int g = pick(4);
        int64_t ts = 1700000000000ll + i * 3;
        if (i == 1500) g = 4;                      /* a group of one row: stddev NULL */
        char x[40];
        double xv = g == 3 ? 1e9 + pick(7) : (double)pick(100000) / 1000.0;
        if (pick(20) == 0) snprintf(x, sizeof x, "null");
        else snprintf(x, sizeof x, g == 3 ? "%.1f" : "%.3f", xv);
        snprintf(js[i], sizeof js[i], "{\"g\":\"%s\",\"x\":%s,\"n\":%d,\"ts\":%lld}",
                 groups[g], x, pick(100), (long long)ts);
        fprintf(fp, "%s\n", js[i]);
        r[i].ts = ts;
        r[i].value = js[i];
    }
    fclose(fp);
    produce(f, "ag", 0, r, N);
    free(r);
    free(js);
    char *out = run_ok(f, "CREATE STREAM ags (g TEXT, x REAL, n INTEGER, ts INTEGER) "
                          "WITH (topic = 'ag')");
    free(out);
    check_query(f, "stats",
                "SELECT window_start, g, count(*), stddev(x), stddev_pop(x), variance(x), "
                "var_pop(x), count(*) FILTER (WHERE n > 50), sum(n) FILTER (WHERE x > 0.5), "
                "stddev_samp(x) FILTER (WHERE n % 2 = 0) FROM ags GROUP BY TUMBLE(ts, '2s'), g");

    /* sketches: groups of 1 .. 20000 distinct values, each 1-3 times */
    static const int card[] = {1, 10, 100, 1000, 20000};
    static const double ps[] = {0, 0.01, 0.25, 0.5, 0.9, 0.99, 1};
    topic(f, "sk", 1);
    size_t total = 0;
    double *vals[5];
    size_t nv[5];
    rn_buf_t txt = RN_BUF_INIT;
    for (int c = 0; c < 5; c++) {
        vals[c] = malloc((size_t)card[c] * 3 * sizeof(double));
        nv[c] = 0;
        trec_t batch[256];
        char bj[256][96];
        int nb = 0;
        for (int d = 0; d < card[c]; d++) {
            int reps = 1 + pick(3);
            /* over nine decades, both signs, some zeros */
            double v = pick(50) == 0 ? 0 : pow(10, -3 + pick(90000) / 10000.0) *
                                               (pick(3) == 0 ? -1 : 1);
            for (int k = 0; k < reps; k++) {
                vals[c][nv[c]++] = v;
                snprintf(bj[nb], sizeof bj[nb], "{\"grp\":%d,\"v\":%.17g,\"u\":\"d%d\"}", c, v,
                         d);
                batch[nb] = (trec_t){1, NULL, bj[nb]};
                if (++nb == 256) { produce(f, "sk", 0, batch, (size_t)nb); nb = 0; }
            }
        }
        if (nb) produce(f, "sk", 0, batch, (size_t)nb);
        total += nv[c];
    }
    out = run_ok(f, "CREATE STREAM sks (grp INTEGER, v REAL, u TEXT) WITH (topic = 'sk')");
    free(out);
    out = run_ok(f, "SELECT grp, approx_count_distinct(u), approx_count_distinct(v), count(*), "
                    "percentile_approx(v, 0), percentile_approx(v, 0.01), "
                    "percentile_approx(v, 0.25), percentile_approx(v, 0.5), "
                    "percentile_approx(v, 0.9), percentile_approx(v, 0.99), "
                    "percentile_approx(v, 1) FROM sks GROUP BY grp");
    const char *line = out;
    for (int c = 0; c < 5; c++) {
        int g;
        long long du, dv, n;
        double est[7];
        if (sscanf(line, "%d|%lld|%lld|%lld|%lf|%lf|%lf|%lf|%lf|%lf|%lf", &g, &du, &dv, &n,
                   &est[0], &est[1], &est[2], &est[3], &est[4], &est[5], &est[6]) != 11)
            fail_msg("row %d: %.200s", c, line);
        assert_int_equal(g, c);
        assert_int_equal(n, (long long)nv[c]);
        /* HyperLogLog, 4096 registers: standard error 1.6%; 4 sigma */
        double tol = card[c] * 0.065 + 1;
        if (fabs((double)du - card[c]) > tol)
            fail_msg("approx_count_distinct: %lld for %d distinct", du, card[c]);
        /* distinct v: fewer when values collided (zeros) */
        int dist = 0;
        qsort(vals[c], nv[c], sizeof(double), cmp_double);
        for (size_t k = 0; k < nv[c]; k++) dist += k == 0 || vals[c][k] != vals[c][k - 1];
        if (fabs((double)dv - dist) > dist * 0.065 + 1)
            fail_msg("approx_count_distinct(v): %lld for %d distinct", dv, dist);
        for (int k = 0; k < 7; k++) {
            double exact = vals[c][(size_t)floor(ps[k] * (double)(nv[c] - 1))];
            /* 1% relative error, plus the %.6g of the printed value */
            if (fabs(est[k] - exact) > 0.0101 * fabs(exact) + 1e-12)
                fail_msg("percentile_approx(v, %g) over %zu values: %.9g, exact %.9g", ps[k],
                         nv[c], est[k], exact);
        }
        line = strchr(line, '\n');
        assert_non_null(line);
        line++;
        free(vals[c]);
    }
    rn_buf_free(&txt);
    free(out);
    (void)total;

    /* NULLs and empty groups */
    out = run_ok(f, "SELECT stddev(v), var_pop(v), approx_count_distinct(v), "
                    "percentile_approx(v, 0.5), count(*) FILTER (WHERE v > 1e300) FROM sks "
                    "WHERE grp = 99");
    assert_string_equal(out, "NULL|NULL|0|NULL|0\n");
    free(out);
    out = run_ok(f, "SELECT stddev_pop(n), stddev(n), var_pop(n) FROM ags WHERE g = 'one'");
    assert_string_equal(out, "0|NULL|0\n");
    free(out);

    /* bad arguments */
    produce1(f, "ag", 1700000010000ll, "{\"g\":\"a\",\"x\":1,\"n\":1,\"ts\":1700000010000,"
                                          "\"s\":\"abc\"}");
    char err[RN_ERRMSG_SIZE];
    int eo;
    rn_sql_stats_t st;
    assert_int_equal(run_sql(f, "SELECT count(*), stddev(json_extract(value, '$.s')) FROM ags",
                             NULL, &out, &eo, err, &st), 0);
    if (st.errors != 1 || !strstr(st.first_error, "stddev(): 'abc' is not a number"))
        fail_msg("errors %llu: %s", (unsigned long long)st.errors, st.first_error);
    free(out);
    static const struct { const char *sql, *msg; int off; } bad[] = {
        {"SELECT percentile_approx(x, 1.5) FROM ags", "takes a constant fraction p from 0 to 1",
         28},
        {"SELECT percentile_approx(x, n) FROM ags", "takes a constant fraction p", 28},
        {"SELECT percentile_approx(x) FROM ags", "takes a constant fraction p", 7},
        {"SELECT stddev(x, n) FROM ags", "stddev() takes one argument", 7},
        {"SELECT count(*) FILTER (n > 1) FROM ags", "FILTER is written count(...) FILTER (WHERE "
         "condition)", 16},
        {"SELECT count(*) FILTER (WHERE) FROM ags", "FILTER is written", 16},
        {"SELECT sum(x) FILTER (WHERE count(*) > 1) FROM ags", "an aggregate in FILTER (WHERE "
         "...) is not valid", 28},
        {"SELECT stddev(var_pop(x)) FROM ags", "aggregate calls cannot be nested", 14},
        {"SELECT median(x) FROM ags", "aggregate median() is not supported on streams; "
         "supported: count", 7},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eo = -1;
        if (run_sql(f, bad[i].sql, NULL, &out, &eo, err, NULL) == 0 || !strstr(err, bad[i].msg))
            fail_msg("%s: got '%s', want '%s'", bad[i].sql, err, bad[i].msg);
        if (eo != bad[i].off) fail_msg("%s: offset %d, want %d", bad[i].sql, eo, bad[i].off);
        free(out);
    }
}

/* The shipped templates, CREATE FUNCTION stored and used by later statements
 * (a plain query, window keys and aggregate arguments), SHOW / DROP FUNCTION,
 * and the refusals. */
static void test_sql_functions(void **state)
{
    sqlfix_t *f = *state;
    topic(f, "one", 1);
    produce1(f, "one", 1, "{\"s\":\"x\"}");
    static const struct { const char *expr, *want; } tv[] = {
        {"mask_ip('192.168.1.77')", "192.168.1.0"},
        {"mask_ip('10.0.0.1')", "10.0.0.0"},
        {"mask_ip('2001:db8:85a3:8d3:1319:8a2e:370:7348')", "2001:db8:85a3::"},
        {"mask_ip('not an ip')", "not an ip"},
        {"mask_ip(NULL)", "NULL"},
        {"ua_family('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
         "Gecko) Chrome/120.0.0.0 Safari/537.36')", "Chrome"},
        {"ua_family('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
         "Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0')", "Edge"},
        {"ua_family('Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0')",
         "Firefox"},
        {"ua_family('Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, "
         "like Gecko) Version/17.2 Safari/605.1.15')", "Safari"},
        {"ua_family('Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)')",
         "Bot"},
        {"ua_family('curl/8.4.0')", "curl"},
        {"ua_family('')", "Other"},
        {"normalize_level(' warning ')", "WARN"},
        {"normalize_level('Err')", "ERROR"},
        {"normalize_level('CRITICAL')", "FATAL"},
        {"normalize_level('info')", "INFO"},
        {"normalize_level('notice')", "INFO"},
        {"url_path('https://example.com/a/b?q=1#frag')", "/a/b"},
        {"url_path('/api/v1/users?id=3')", "/api/v1/users"},
        {"url_path('https://example.com')", "/"},
        {"url_path('http://h:8080/x%20y')", "/x%20y"},
    };
    for (size_t i = 0; i < sizeof tv / sizeof tv[0]; i++) want_value(f, tv[i].expr, tv[i].want);

    char *out = run_ok(f, "CREATE FUNCTION tag(s TEXT, n INTEGER) RETURNS TEXT AS "
                          "'upper(s) || ''#'' || (n * 2)'");
    free(out);
    out = run_ok(f, "CREATE FUNCTION bucket(x REAL) RETURNS INTEGER AS "
                    "'CASE WHEN x IS NULL THEN -1 ELSE x / 10 END'");
    free(out);
    /* stored: visible to the statements that follow, with argument casts */
    want_value(f, "tag('ab', 3), tag('ab', '4'), tag(NULL, 1), bucket(25.5), bucket(NULL)",
               "AB#6|AB#8|NULL|2|-1");
    topic(f, "lv", 1);
    trec_t r[6] = {{1000, NULL, "{\"lvl\":\"warning\",\"x\":5}"},
                   {1500, NULL, "{\"lvl\":\"WARN\",\"x\":15}"},
                   {1700, NULL, "{\"lvl\":\"err\",\"x\":25}"},
                   {2100, NULL, "{\"lvl\":\"Error\",\"x\":35}"},
                   {2200, NULL, "{\"lvl\":\"info\",\"x\":45}"},
                   {2900, NULL, "{\"lvl\":\"WARN\",\"x\":55}"}};
    produce(f, "lv", 0, r, 6);
    out = run_ok(f, "CREATE STREAM lvs (lvl TEXT, x REAL) WITH (topic = 'lv')");
    free(out);
    out = run_ok(f, "SELECT window_start, normalize_level(lvl) AS l, count(*), sum(bucket(x)) "
                    "FROM lvs GROUP BY TUMBLE(ts, '1s'), normalize_level(lvl)");
    assert_string_equal(out, "1000|WARN|2|1\n1000|ERROR|1|2\n2000|ERROR|1|3\n2000|INFO|1|4\n"
                             "2000|WARN|1|5\n");
    free(out);
    out = run_ok(f, "SHOW FUNCTIONS");
    if (!strstr(out, "mask_ip|template|mask_ip(ip TEXT)") ||
        !strstr(out, "tag|stored|\"tag\"(\"s\" TEXT, \"n\" INTEGER) RETURNS TEXT AS "
                     "'upper(s) || ''#'' || (n * 2)'"))
        fail_msg("SHOW FUNCTIONS: %s", out);
    free(out);
    /* an error inside a body rejects the record, naming the function */
    out = run_ok(f, "CREATE FUNCTION hr(t TEXT) RETURNS INTEGER AS 'hour(to_timestamp(t))'");
    free(out);
    want_reject(f, "hr('garbage')", "to_timestamp(): 'garbage' is not an ISO-8601 time");
    want_value(f, "hr('2024-01-01T05:00:00Z')", "5");
    out = run_ok(f, "DROP FUNCTION tag");
    free(out);
    want_fail(f, "tag('a', 1)", "no such function: tag()", 0);
    out = run_ok(f, "DROP FUNCTION IF EXISTS tag");
    free(out);
    /* quoted names survive the stored form */
    out = run_ok(f, "CREATE FUNCTION qq(\"a\"\"b\" TEXT, [c d] INTEGER) RETURNS TEXT AS "
                    "'\"a\"\"b\" || [c d]'");
    free(out);
    want_value(f, "qq('x', 2)", "x2");
    /* a damaged stored definition fails its calls, not every query */
    rn_meta_function_t *bf = calloc(1, sizeof *bf);
    assert_non_null(bf);
    snprintf(bf->name, sizeof bf->name, "broken");
    snprintf(bf->def, sizeof bf->def, "broken(a TEXT) RETURNS AS");
    char err[RN_ERRMSG_SIZE];
    rn_meta_t *m = rn_datadir_meta_lock(f->d);
    assert_int_equal(rn_meta_function_create(m, bf, err), 0);
    rn_datadir_meta_unlock(f->d);
    free(bf);
    want_value(f, "mask_ip('1.2.3.4')", "1.2.3.0");
    want_reject(f, "broken('x')", "stored function 'broken' cannot be loaded: syntax error");
    out = run_ok(f, "DROP FUNCTION broken");
    free(out);
    static const struct { const char *sql, *msg; int off; } bad[] = {
        {"CREATE FUNCTION f1(a TEXT) RETURNS TEXT AS 'b || a'", "function f1's body: no such "
         "column: b; it may use its parameters (a) and functions", 16},
        {"CREATE FUNCTION f2(a TEXT) RETURNS TEXT AS '(SELECT max(x) FROM lvs)'",
         "one expression over its parameters: no subquery", 45},
        {"CREATE FUNCTION f3(a TEXT) RETURNS TEXT AS 'a; DROP TABLE x'", "no subquery, table "
         "or second statement", 45},
        {"CREATE FUNCTION mask_ip(a TEXT) RETURNS TEXT AS 'a'", "a shipped template: choose "
         "another name", 16},
        {"CREATE FUNCTION upper(a TEXT) RETURNS TEXT AS 'a'", "one of sqlite's or streamsql's", 16},
        {"CREATE FUNCTION bucket(a TEXT) RETURNS TEXT AS 'a'", "stored: DROP FUNCTION it first",
         16},
        {"CREATE FUNCTION f4(a TEXT, a INTEGER) RETURNS TEXT AS 'a'", "parameter 'a' is declared "
         "twice", 27},
        {"CREATE FUNCTION f5(a BLOB) RETURNS TEXT AS 'a'", "parameter types are INTEGER", 21},
        {"CREATE FUNCTION f6(a TEXT) AS 'a'", "RETURNS INTEGER, REAL, TEXT", 27},
        {"CREATE FUNCTION f7(a TEXT) RETURNS TEXT AS a", "AS 'expression'", 43},
        {"CREATE FUNCTION f8(a TEXT) RETURNS TEXT AS ''", "the function's body is empty", 43},
        {"CREATE FUNCTION __f(a TEXT) RETURNS TEXT AS 'a'", "names starting with __", 16},
        {"CREATE FUNCTION f9(a TEXT) RETURNS TEXT AS '__idx + a'", "names starting with __",
         44},
        {"DROP FUNCTION nothere", "no function 'nothere'", -1},
        {"DROP FUNCTION url_path", "a shipped template; it cannot be dropped", -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int eo = -1;
        if (run_sql(f, bad[i].sql, NULL, &out, &eo, err, NULL) == 0 || !strstr(err, bad[i].msg))
            fail_msg("%s: got '%s', want '%s'", bad[i].sql, err, bad[i].msg);
        if (bad[i].off >= 0 && eo != bad[i].off)
            fail_msg("%s: offset %d, want %d", bad[i].sql, eo, bad[i].off);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_against_python, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_edges_and_errors, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_event_time_errors, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_intervals_and_tvf, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_aggregates, sqlfix_setup, sqlfix_teardown),
        cmocka_unit_test_setup_teardown(test_sql_functions, sqlfix_setup, sqlfix_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
