#!/usr/bin/env python3
"""Check every Nexmark query runnel runs against an independent computation.

usage: oracle.py BIN_DIR DATA_DIR

DATA_DIR holds the events `runnel-bench nexmark --generate` wrote. For every
query `runnel-bench nexmark --list` marks "runs", this script computes the
expected rows in plain Python from the events (read back with `runnel
consume --format json`, not through the SQL engine), runs the query's SQL
with `streamsql --format csv`, and compares the two as multisets of rows
(numbers compared with a relative tolerance of 1e-9, since CSV prints REAL
values rounded). A query marked "runs" without a computation here fails:
nothing is skipped silently. Exit status 0 when every query matched, else
1 with the first differences of each query that did not.
"""
import csv
import datetime
import io
import json
import math
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict

DAY_MS = 86400000
GAP_MS = 10000


def events(bindir, data, topic):
    out = subprocess.run([bindir + "/runnel", "--data", data, "consume", topic,
                          "--format", "json"], check=True, capture_output=True, text=True).stdout
    return [json.loads(json.loads(line)["value"]) for line in out.splitlines()]


def utc(ms):
    return datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)


def q0(ev):
    return [(b["auction"], b["bidder"], b["price"], b["dateTime"], b["extra"]) for b in ev["bid"]]


def q1(ev):
    return [(b["auction"], b["bidder"], 0.908 * b["price"], b["dateTime"], b["extra"])
            for b in ev["bid"]]


def q2(ev):
    return [(b["auction"], b["price"]) for b in ev["bid"] if b["auction"] % 123 == 0]


def q3(ev):
    # person is a table (latest record per id); an auction finds its seller
    people = {}
    for p in ev["person"]:
        people[p["id"]] = p
    rows = []
    for a in ev["auction"]:
        p = people.get(a["seller"])
        if a["category"] == 10 and p is not None and p["state"] in ("OR", "ID", "CA"):
            rows.append((p["name"], p["city"], p["state"], a["id"]))
    return rows


def q5(ev):
    # HOP: 10 s windows every 2 s; per window the auctions with the most bids (ties kept)
    counts = defaultdict(Counter)
    for b in ev["bid"]:
        t = b["dateTime"]
        last = t - t % 2000
        for start in range(last - 8000, last + 1, 2000):
            counts[start][b["auction"]] += 1
    rows = []
    for start, per in counts.items():
        top = max(per.values())
        rows.extend((a, n) for a, n in per.items() if n == top)
    return rows


def q7(ev):
    # per 10 s tumbling window, every bid with the window's highest price
    per = defaultdict(list)
    for b in ev["bid"]:
        per[b["dateTime"] - b["dateTime"] % 10000].append(b)
    rows = []
    for bids in per.values():
        top = max(b["price"] for b in bids)
        rows.extend((b["auction"], b["price"], b["bidder"], b["dateTime"], b["extra"])
                    for b in bids if b["price"] == top)
    return rows


def q18(ev):
    # per 10 s tumbling window and (bidder, auction), the last bid; bids at the same
    # time: the smallest (price, channel, url, extra), as streamsql breaks ties
    last = {}
    for b in ev["bid"]:
        k = (b["dateTime"] - b["dateTime"] % 10000, b["bidder"], b["auction"])
        key = (-b["dateTime"], b["price"], b["channel"].encode(), b["url"].encode(),
               b["extra"].encode())
        if k not in last or key < last[k][0]:
            last[k] = (key, b)
    return [(b["auction"], b["bidder"], b["price"], b["channel"], b["url"], b["dateTime"],
             b["extra"]) for _, b in last.values()]


def q10(ev):
    return [(b["auction"], b["bidder"], b["price"], b["dateTime"], b["extra"],
             utc(b["dateTime"]).strftime("%Y-%m-%d"), utc(b["dateTime"]).strftime("%H:%M"))
            for b in ev["bid"]]


def q11(ev):
    per = defaultdict(list)
    for b in ev["bid"]:
        per[b["bidder"]].append(b["dateTime"])
    rows = []
    for bidder, ts in per.items():
        ts.sort()
        start, last, n = ts[0], ts[0], 0
        for t in ts:
            if t >= last + GAP_MS:          # a session is [first, last + gap)
                rows.append((bidder, n, start, last + GAP_MS))
                start, n = t, 0
            last, n = t, n + 1
        rows.append((bidder, n, start, last + GAP_MS))
    return rows


def q14(ev):
    rows = []
    for b in ev["bid"]:
        p = 0.908 * b["price"]
        if not (1000000 < p < 50000000):
            continue
        h = utc(b["dateTime"]).hour
        kind = "dayTime" if 8 <= h <= 18 else "nightTime" if h <= 6 or h >= 20 else "otherTime"
        rows.append((b["auction"], b["bidder"], p, kind, b["dateTime"], b["extra"],
                     b["extra"].count("c")))
    return rows


def rank(price):
    return 1 if price < 10000 else 2 if price < 1000000 else 3


def by_day(bids, key):
    groups = defaultdict(list)
    for b in bids:
        groups[key(b) + (b["dateTime"] // DAY_MS * DAY_MS,)].append(b)
    return groups


def ranked_counts(bs):
    return [len(bs)] + [sum(1 for b in bs if rank(b["price"]) == r) for r in (1, 2, 3)]


def distinct(bs, field, r=None):
    return len({b[field] for b in bs if r is None or rank(b["price"]) == r})


def q15(ev):
    rows = []
    for (day,), bs in by_day(ev["bid"], lambda b: ()).items():
        rows.append(tuple([day] + ranked_counts(bs) +
                          [distinct(bs, "bidder", r) for r in (None, 1, 2, 3)] +
                          [distinct(bs, "auction", r) for r in (None, 1, 2, 3)]))
    return rows


def q16(ev):
    rows = []
    for (channel, day), bs in by_day(ev["bid"], lambda b: (b["channel"],)).items():
        rows.append(tuple([channel, day] + ranked_counts(bs) +
                          [distinct(bs, "bidder"), distinct(bs, "bidder", 1),
                           distinct(bs, "auction"), distinct(bs, "auction", 1)]))
    return rows


def q17(ev):
    rows = []
    for (auction, day), bs in by_day(ev["bid"], lambda b: (b["auction"],)).items():
        ps = [b["price"] for b in bs]
        rows.append(tuple([auction, day] + ranked_counts(bs) +
                          [min(ps), max(ps), sum(ps) / len(ps), sum(ps)]))
    return rows


def q21(ev):
    fixed = {"apple": "0", "google": "1", "facebook": "2", "baidu": "3"}
    rows = []
    for b in ev["bid"]:
        m = re.search(r"(&|^)channel_id=([^&]*)", b["url"])
        ch = b["channel"].lower()
        if m is None and ch not in fixed:
            continue
        # an all-digit channel id reads back from CSV as a number
        cid = fixed.get(ch, m.group(2) if m else None)
        rows.append((b["auction"], b["bidder"], b["price"], b["channel"], typed(cid)))
    return rows


def q8(ev):
    # people and sellers of auctions in the same 10 s window, each person once per window
    size = 10000
    sellers = {(a["seller"], a["dateTime"] // size) for a in ev["auction"]}
    return list({(p["id"], p["name"], p["dateTime"] // size * size) for p in ev["person"]
                 if (p["id"], p["dateTime"] // size) in sellers})


def q20(ev):
    # every bid with its auction (the latest record per id), category 10 only
    auctions = {}
    for a in ev["auction"]:
        auctions[a["id"]] = a
    rows = []
    for b in ev["bid"]:
        a = auctions.get(b["auction"])
        if a is not None and a["category"] == 10:
            rows.append((b["auction"], b["bidder"], b["price"], b["channel"], b["url"],
                         b["dateTime"], b["extra"], a["itemName"], a["description"],
                         a["initialBid"], a["reserve"], a["dateTime"], a["expires"], a["seller"],
                         a["category"], a["extra"]))
    return rows


def q22(ev):
    rows = []
    for b in ev["bid"]:
        parts = b["url"].split("/")
        dirs = [parts[i] if i < len(parts) else "" for i in (3, 4, 5)]
        rows.append((b["auction"], b["bidder"], b["price"], b["channel"], *dirs))
    return rows


def q12(ev, got, t0, t1):
    """Windows over processing time: which window a bid falls in depends on
    when streamsql read it, so no computation predicts the rows. What must
    hold: every row is a 10 s window aligned to 10 s, inside the run's wall
    clock span [t0, t1]; no (bidder, window) twice; and per bidder the
    counts add up to the bidder's bids."""
    bad, seen, per = [], set(), Counter()
    want = Counter(b["bidder"] for b in ev["bid"])
    for row in got:
        bidder, count, ws, we = row
        s, e = iso_ms(ws), iso_ms(we)
        if e - s != 10000 or s % 10000 or not (t0 - 10000 <= s <= t1):
            bad.append(f"window [{ws}, {we}) is not a 10 s window within the run")
        if (bidder, s) in seen:
            bad.append(f"bidder {bidder} has window {ws} twice")
        seen.add((bidder, s))
        per[bidder] += count
    if per != want:
        diff = [(k, per.get(k), want.get(k)) for k in set(per) | set(want) if per.get(k) != want.get(k)]
        bad.append(f"counts per bidder differ (bidder, got, bids): {sorted(diff)[:5]}")
    return bad[:5]


def iso_ms(text):
    if isinstance(text, int):           # CSV prints window bounds as epoch milliseconds
        return text
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return int(d.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


# Queries whose rows depend on when they run: checked by what must hold.
CHECKS = {"q12": q12}

ORACLES = {"q0": q0, "q1": q1, "q2": q2, "q3": q3, "q5": q5, "q7": q7, "q8": q8, "q10": q10, "q11": q11,
           "q14": q14, "q15": q15, "q16": q16, "q17": q17, "q18": q18, "q20": q20, "q21": q21, "q22": q22}


def typed(cell):
    for conv in (int, float):
        try:
            return conv(cell)
        except ValueError:
            pass
    return cell


def same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                return False
        elif str(x) != str(y):
            return False
    return True


def sort_key(row):
    return tuple((0, round(v, 6), "") if isinstance(v, (int, float)) else (1, 0, str(v))
                 for v in row)


def compare(name, want, got):
    want = sorted(want, key=sort_key)
    got = sorted(got, key=sort_key)
    bad = []
    if len(want) != len(got):
        bad.append(f"{len(got)} rows, expected {len(want)}")
    for w, g in zip(want, got):
        if not same(w, g):
            bad.append(f"got {g!r}, expected {w!r}")
            if len(bad) >= 5:
                break
    return bad


def main():
    bindir, data = sys.argv[1], sys.argv[2]
    listing = subprocess.run([bindir + "/runnel-bench", "nexmark", "--list"], check=True,
                             capture_output=True, text=True).stdout
    ev = {t: events(bindir, data, t) for t in ("person", "auction", "bid")}
    failed = 0
    for line in listing.splitlines():
        name, state, sql = line.split("\t", 2)
        if state != "runs":
            continue
        if name not in ORACLES and name not in CHECKS:
            print(f"{name}: runs, but this script has no computation to check it against")
            failed += 1
            continue
        t0 = int(time.time() * 1000)
        res = subprocess.run([bindir + "/streamsql", "--data", data, "-e", sql, "--format",
                              "csv"], capture_output=True, text=True)
        t1 = int(time.time() * 1000)
        if res.returncode != 0:
            print(f"{name}: streamsql exited {res.returncode}: {res.stderr.strip()}")
            failed += 1
            continue
        rows = list(csv.reader(io.StringIO(res.stdout)))
        got = [tuple(typed(c) for c in r) for r in rows[1:]]
        bad = (CHECKS[name](ev, got, t0, t1) if name in CHECKS
               else compare(name, ORACLES[name](ev), got))
        if bad:
            failed += 1
            print(f"{name}: differs from the computation:")
            for b in bad:
                print("   ", b)
        else:
            print(f"{name}: {len(got)} rows " + ("hold what must hold" if name in CHECKS
                                                 else "match"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
