#!/usr/bin/env python3
"""
tests/cluster/measure.py — the cluster's figures for bench/RESULTS.md.

`failover`: three real runneld nodes on loopback (the Harness of jepsen.py),
one topic of 3 queues replicated on all three (each node leads one), one
idempotent producer per queue. K times: wait until every queue has 3 in sync,
kill -9 a queue's leader (every other time the controller leader, which then
needs a raft election first), timed as jepsen.py's kill_leader_timed does
(from the kill to the first produce acknowledged on a new leader), then start
it again. Printed: p50 and max, per kind and over all. Every producer must
exit 0 at the end (every record acknowledged).

`catchup`: the same three nodes, one topic `c` of one queue replicated on all
three. One follower is killed (kill -9),
N records of S bytes are produced to the leader (acks all: the two in-sync
replicas), the follower is started again, and the queue's state is polled
through `runnel cluster status` every 20 ms until the follower is back in the
ISR with no lag. Printed: the time from the restart until the follower's
first fetch was seen (its lag known), the time from then until its lag was 0,
and the copy rate over the latter (records/s and MB/s). The rate is bounded
by one fetcher per followed queue, long-polling the leader's Fetch.

Usage: measure.py --bin bin failover [--kills 20]
       measure.py --bin bin catchup [--records 2000000] [--size 100] [--runs 3]
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jepsen  # noqa: E402


def harness(args):
    return jepsen.Harness(argparse.Namespace(bin=args.bin, seed=0, netns=False, keep=False,
                                             rate=2000))


def failover(args):
    import statistics
    h = harness(args)
    producers = []
    times = {True: [], False: []}
    try:
        for n in h.nodes:
            n.start()
        h.wait_for("three live nodes", lambda c, q: len(c["live"]) == 3)
        r = h.runnel("topic", "create", "t", "--queues", "3", server=h.servers)
        if r.returncode != 0:
            sys.exit("topic create: %s" % r.stderr.strip())
        in_sync = lambda c, qs: len(qs) == 3 and all(len(q.get("isr", [])) == 3 for q in qs)
        h.wait_for("3 in sync", in_sync)
        producers = [jepsen.Producer(h, q) for q in range(3)]
        h.producers = producers
        for i in range(args.kills):
            ctl, qs = h.wait_for("3 in sync", in_sync)
            time.sleep(0.5)
            leaders = {q.get("leader") for q in qs}
            want_ctl = i % 2 == 1
            victim = next((n for n in h.nodes if n.id in leaders and
                           (n.id == ctl["leader"]) == want_ctl), None)
            if victim is None:
                victim = next(n for n in h.nodes if n.id in leaders)
            was_ctl = victim.id == ctl["leader"]
            h.log("kill -9 node %d%s" % (victim.id, " (the controller leader)" if was_ctl
                                          else ""))
            before = len(h.failovers)
            jepsen.kill_leader_timed(h, victim, qs, was_ctl)
            if len(h.failovers) > before:
                times[was_ctl].append(h.failovers[-1])
            victim.start()
        for p in producers:
            rc, err = p.finish()
            if rc != 0:
                h.fail("producer of queue %d exited %d: %s" % (p.q, rc, err))
        producers = []
    finally:
        for p in producers:
            p.proc.kill()
        for n in h.nodes:
            n.kill9()
        if not args.keep:
            import shutil
            shutil.rmtree(h.work, ignore_errors=True)

    def line(what, xs):
        if xs:
            print("failover: %s: %d measured, p50 %.0f ms, max %.0f ms" %
                  (what, len(xs), statistics.median(xs), max(xs)), flush=True)
    line("the killed node led queues only", times[False])
    line("the killed node was also the controller leader", times[True])
    line("all", times[False] + times[True])
    if h.failures:
        sys.exit("failover: %d failures: %s" % (len(h.failures), h.failures[0]))


def catchup(args):
    for _ in range(args.runs):
        one_run(args)


def one_run(args):
    h = harness(args)
    try:
        for n in h.nodes:
            n.start()
        h.wait_for("three live nodes", lambda c, q: len(c["live"]) == 3)
        r = h.runnel("topic", "create", "c", "--queues", "1", server=h.servers)
        if r.returncode != 0:
            sys.exit("topic create: %s" % r.stderr.strip())
        _, qs = h.wait_for("3 in sync", lambda c, qs: qs and len(qs[0].get("isr", [])) == 3)
        q = qs[0]
        follower = next(n for n in h.nodes if n.id != q["leader"])
        idx = q["replicas"].index(follower.id)
        follower.kill9()
        line = ("x" * (args.size - 1) + "\n").encode()
        t = time.time()
        p = subprocess.run([h.bin("runnel"), "--server", h.servers, "produce", "c", "--queue",
                            "0"], input=line * args.records, capture_output=True, timeout=600)
        if p.returncode != 0:
            sys.exit("produce: %s" % p.stderr.decode().strip())
        produced = time.time() - t
        t0 = time.time()
        follower.start()
        t_seen = t_done = None
        while time.time() - t0 < 300:
            _, qs = h.status()
            if qs:
                lag = (qs[0].get("lag") or [None] * 3)[idx]
                if lag is not None and t_seen is None and lag < args.records:
                    t_seen = time.time()
                if lag == 0 and follower.id in qs[0].get("isr", []):
                    t_done = time.time()
                    break
            time.sleep(0.02)
        if t_done is None or t_seen is None:
            sys.exit("the follower did not catch up within 300 s")
        copy = max(t_done - t_seen, 1e-3)
        print("catchup: %d records of %d bytes (produced in %.2f s); follower %d restarted: "
              "first fetch seen after %.2f s, caught up %.2f s later: %.2f M records/s, "
              "%.0f MB/s" % (args.records, args.size, produced, follower.id, t_seen - t0, copy,
                             args.records / copy / 1e6, args.records * args.size / copy / 1e6),
              flush=True)
    finally:
        for n in h.nodes:
            n.kill9()
        if not args.keep:
            import shutil
            shutil.rmtree(h.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="bin")
    ap.add_argument("what", choices=["failover", "catchup"])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--records", type=int, default=2000000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    failover(args) if args.what == "failover" else catchup(args)


if __name__ == "__main__":
    main()
