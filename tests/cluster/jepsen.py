#!/usr/bin/env python3
"""
tests/cluster/jepsen.py — a Jepsen-style check of runnel's replicated queues.

Three real runneld nodes on loopback (fixed client ports, so a restarted node
keeps its address), one topic of Q queues replicated on all three. While
producers and a consumer run, faults are injected on a seeded schedule:

  kill-leader      kill -9 of the leader of a random queue
  kill-controller  kill -9 of the controller leader
  kill-follower    kill -9 of a node leading no queue (else any follower)
  pause            SIGSTOP of a random node for 2-4 s, then SIGCONT
  partition        one node (a queue leader, the controller leader or any)
                   cut off from both other nodes for 2-5 s, then healed;
                   clients still reach every node
  bridge           two nodes cut off from each other for 2-5 s while both
                   still reach the third (a non-transitive partition)

A killed node is restarted 1-3 s later.

Partitions need network namespaces (root and `unshare -n`). With them, the
harness re-runs itself in a private namespace of its own (the hub: a bridge
at 10.77.0.254) and runs each node in a namespace of its own at 10.77.0.N,
joined to the hub by a veth pair; a partition is a blackhole route to the
other side in each side's namespace, so both directions drop silently (as a
switch that stops forwarding does), and healing deletes the routes. Nothing
of this touches the machine's own network: every namespace ends with the
harness (the nodes' holders die with it: PR_SET_PDEATHSIG). Where namespaces
are unavailable, the partition kinds are skipped with a message saying why,
and the nodes run on 127.0.0.1 as before. The producers are `runnel --server
A,B,C produce t --queue q` (idempotent, riding out failovers), one per queue,
each writing the lines "q<q>-<seq>" in order. The consumer is `runnel
--server A,B,C consume t --group jepsen --follow --format json`. A poller
reads the group's committed offsets on every node once a second.

After the schedule every node is running again; the harness waits until each
queue's ISR holds all three replicas, closes the producers' input (each must
exit 0: every line stored), lets the consumer reach the end, stops the nodes
with SIGTERM and reads every replica offline (`runnel --data DIR consume`).
The checker then verifies, per queue:

  1. every replica holds exactly the lines "q<q>-0" .. "q<q>-<n-1>" that the
     producer sent, in order, each once (acknowledged = all of them, since
     the producer exited 0);
  2. no offset holds different records on two replicas (byte-identical
     (offset, value) lists on all replicas);
  3. the consumer saw, per queue, offsets 0..k-1 with the same values the log
     holds there (a prefix of the log, nothing skipped or repeated);
  4. the committed offsets polled on each node never went backwards (group
     offsets go through the controller, cluster/README.md: every node
     applies the same committed sequence), and after the consumer's exit
     every node reads the offsets it committed last (per queue, the count
     of records it read).

The failover time (kill -9 of a queue leader, with both other nodes up, to
the first acknowledged produce on a new leader) is measured for each
kill-leader fault and summarised at the end (p50, max).

Every violation is printed with the seed; the exit code is 1 on any, 0 when
all hold. Usage:

  jepsen.py --bin bin --seed 7 --faults 6 [--queues 2] [--rate 2000]
            [--kinds kill-leader,kill-controller,kill-follower,pause,partition,bridge]
            [--trials N] [--keep]

`make cluster-test` runs the long form; tests/test_cluster_jepsen.c a short
one inside `make test`.
"""
import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

WAIT_S = 30


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Node:
    def __init__(self, h, nid, host, raft_port, client_port):
        self.h, self.id, self.host = h, nid, host
        self.raft_port, self.client_port = raft_port, client_port
        self.addr = "%s:%d" % (host, client_port)
        self.data = os.path.join(h.work, "node%d" % nid)
        self.logpath = os.path.join(h.work, "node%d.log" % nid)
        self.proc = None
        self.paused = False

    def start(self):
        args = [self.h.bin("runneld"), "--data", self.data, "--listen", self.addr,
                "--node-id", str(self.id), "--cluster", self.h.spec, "--fsync", "group"]
        if os.getuid() == 0:
            args.append("--allow-root")
        if self.h.net:
            # 10.77.0.N is not loopback: plaintext needs --insecure (the
            # namespaces are private to this harness).
            args = self.h.net.enter(self.id) + args + ["--insecure"]
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.h.fail("node %d exited with %d at start" % (self.id, self.proc.returncode))
                return
            try:
                socket.create_connection((self.host, self.client_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.h.fail("node %d did not listen within %d s" % (self.id, WAIT_S))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        if self.alive():
            if self.paused:
                self.proc.send_signal(signal.SIGCONT)
                self.paused = False
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self):
        if not self.alive():
            return 0
        if self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
        self.proc.terminate()
        try:
            return self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9


def die_with_parent():
    """In a child before exec: SIGKILL when the harness dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stderr.strip()))


class Net:
    """Each node in a network namespace of its own, at 10.77.0.N, on a bridge
    in the harness's namespace (the hub, 10.77.0.254). A namespace is held by
    a `sleep` that dies with the harness; the node runs in it through
    nsenter, so a restarted node keeps its address. cut(a, b) adds a
    blackhole route to the other in both namespaces; heal() removes all."""

    @staticmethod
    def host(nid):
        return "10.77.0.%d" % nid

    def __init__(self, n):
        self.holders, self.cuts = {}, set()
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "rnbr0", "type", "bridge")
        sh("ip", "addr", "add", "10.77.0.254/24", "dev", "rnbr0")
        sh("ip", "link", "set", "rnbr0", "up")
        mine = os.readlink("/proc/self/ns/net")
        for nid in range(1, n + 1):
            p = subprocess.Popen(["unshare", "-n", "sleep", "1000000"],
                                 preexec_fn=die_with_parent)
            self.holders[nid] = p
            deadline = time.time() + 5
            while os.readlink("/proc/%d/ns/net" % p.pid) == mine:
                if time.time() > deadline or p.poll() is not None:
                    raise RuntimeError("node %d: no network namespace of its own" % nid)
                time.sleep(0.01)
            sh("ip", "link", "add", "rnv%d" % nid, "type", "veth", "peer", "name", "eth0",
               "netns", str(p.pid))
            sh("ip", "link", "set", "rnv%d" % nid, "master", "rnbr0", "up")
            self.run(nid, "ip", "link", "set", "lo", "up")
            self.run(nid, "ip", "addr", "add", Net.host(nid) + "/24", "dev", "eth0")
            self.run(nid, "ip", "link", "set", "eth0", "up")

    def enter(self, nid):
        return ["nsenter", "-t", str(self.holders[nid].pid), "-n", "--"]

    def run(self, nid, *argv):
        sh(*(self.enter(nid) + list(argv)))

    def route(self, verb, a, b):
        self.run(a, "ip", "route", verb, "blackhole", Net.host(b) + "/32")

    def cut(self, a, b):
        for x, y in ((a, b), (b, a)):
            if (x, y) not in self.cuts:
                self.route("add", x, y)
                self.cuts.add((x, y))

    def heal(self):
        for x, y in sorted(self.cuts):
            self.route("del", x, y)
        self.cuts.clear()

    def close(self):
        for p in self.holders.values():
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", "rnbr0"], capture_output=True)


def netns_reason():
    """None when this harness can make network namespaces, else why not."""
    if os.getuid() != 0:
        return "they need root"
    for tool in ("unshare", "nsenter", "ip"):
        if not shutil.which(tool):
            return "%s is not installed" % tool
    r = subprocess.run(["unshare", "-n", "ip", "link", "add", "rnprobe", "type", "veth"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "unshare -n / veth failed: %s" % r.stderr.strip()
    return None


class Harness:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = tempfile.mkdtemp(prefix="runnel-jepsen.")
        self.failures = []
        self.events = []
        self.producers = []
        self.records = 0
        self.failovers = []         # ms, kill -9 of a leader to the first acknowledged produce
        self.net = Net(3) if args.netns else None
        if self.net:
            hosts, ports = [Net.host(i + 1) for i in range(3)], [9000] * 3 + [7000] * 3
        else:
            hosts, ports = ["127.0.0.1"] * 3, free_ports(6)
        self.spec = ",".join("%d=%s:%d" % (i + 1, hosts[i], ports[i]) for i in range(3))
        self.nodes = [Node(self, i + 1, hosts[i], ports[i], ports[3 + i]) for i in range(3)]
        self.servers = ",".join(n.addr for n in self.nodes)
        self.t0 = time.time()

    def bin(self, name):
        return os.path.join(self.args.bin, name)

    def log(self, msg):
        line = "%7.2f s  %s" % (time.time() - self.t0, msg)
        self.events.append(line)
        print(line, flush=True)

    def fail(self, msg):
        self.failures.append(msg)
        print("VIOLATION: %s (seed %d)" % (msg, self.args.seed), flush=True)

    def runnel(self, *argv, server=None, timeout=10):
        args = [self.bin("runnel")] + (["--server", server] if server else []) + list(argv)
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)

    # The cluster's view from any live node: (controller dict, [queue dicts]).
    def status(self):
        for n in self.nodes:
            if not n.alive() or n.paused:
                continue
            try:
                r = self.runnel("cluster", "status", "--format", "json", server=n.addr, timeout=3)
            except subprocess.TimeoutExpired:
                continue
            if r.returncode != 0:
                continue
            ctl, queues, nodes = None, [], []
            for line in r.stdout.splitlines():
                o = json.loads(line)
                if "topic" in o:
                    queues.append(o)
                elif o.get("kind") == "controller":
                    ctl = o
                elif o.get("kind") == "node":
                    nodes.append(o)
            if ctl and ctl.get("leader"):
                ctl["live"] = sorted(x["node"] for x in nodes if x.get("live") and x.get("client"))
                return ctl, queues
        return None, []

    def wait_for(self, what, pred):
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            ctl, queues = self.status()
            if ctl and pred(ctl, queues):
                return ctl, queues
            time.sleep(0.1)
        self.fail("%s: not within %d s" % (what, WAIT_S))
        return self.status()


class Producer:
    """`runnel --server LIST produce t --queue q` fed "q<q>-<seq>" lines."""

    def __init__(self, h, q):
        self.h, self.q, self.sent = h, q, 0
        self.stop = threading.Event()
        self.hold = threading.Event()       # set: write nothing (a failover measurement)
        self.lock = threading.Lock()
        self.err = open(os.path.join(h.work, "producer%d.err" % q), "w+")
        self.proc = subprocess.Popen(
            [h.bin("runnel"), "--server", h.servers, "produce", "t", "--queue", str(q),
             "--linger-ms", "2", "--delivery-timeout-ms", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.err)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        chunk = max(1, self.h.args.rate // 20)
        while not self.stop.is_set():
            with self.lock:
                if not self.hold.is_set():
                    lines = "".join("q%d-%d\n" % (self.q, self.sent + i) for i in range(chunk))
                    try:
                        self.proc.stdin.write(lines.encode())
                        self.proc.stdin.flush()
                    except (BrokenPipeError, OSError):
                        return
                    self.sent += chunk
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            rc = self.proc.wait(WAIT_S * 4)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.err.seek(0)
        return rc, self.err.read().strip()


class Consumer:
    def __init__(self, h):
        self.h = h
        self.out = open(os.path.join(h.work, "consumer.out"), "w+")
        self.err = open(os.path.join(h.work, "consumer.err"), "w+")
        self.proc = subprocess.Popen(
            [h.bin("runnel"), "--server", h.servers, "consume", "t", "--group", "jepsen",
             "--follow", "--format", "json", "--commit-ms", "100"],
            stdout=self.out, stderr=self.err)

    def seen(self):
        self.out.flush()
        with open(self.out.name) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]

    def finish(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.err.seek(0)
        return rc, self.err.read().strip()


class OffsetPoller:
    """Reads the group's committed offsets on every node once a second;
    remembers regressions, per node."""

    def __init__(self, h):
        self.h, self.last, self.polls = h, {}, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(1.0):
            for n in self.h.nodes:
                if not n.alive() or n.paused:
                    continue
                # Group offsets go through the controller (cluster/README.md):
                # each node applies the same committed sequence in raft order,
                # so what any node shows must never go back. A node that is
                # down or paused fails the poll, which is skipped.
                off = group_offsets(self.h, n, timeout=5)
                if off is None:
                    continue
                self.polls += 1
                for key, v in off.items():
                    k = (n.id,) + key
                    if k in self.last and v < self.last[k]:
                        self.h.fail("node %d: group offset of %s/%s went back from %d to %d" %
                                    (n.id, key[0], key[1], self.last[k], v))
                    self.last[k] = v

    def finish(self):
        self.stop.set()
        self.thread.join()


def group_offsets(h, n, timeout=5):
    """{(topic, queue): offset} of group jepsen as node n reads it; None when
    the call fails."""
    try:
        r = h.runnel("group", "offsets", "jepsen", server=n.addr, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if r.returncode != 0:
        return None
    out = {}
    for line in r.stdout.splitlines()[1:]:          # TOPIC QUEUE OFFSET START END LAG
        cols = line.split()
        if len(cols) >= 3 and cols[1].isdigit() and cols[2].isdigit():
            out[(cols[0], int(cols[1]))] = int(cols[2])
    return out


def check_final_offsets(h, seen, queues):
    """The consumer committed, at its exit, the next offset of every queue it
    read: every node must read exactly that (within WAIT_S)."""
    want = {}
    for q in range(queues):
        k = sum(1 for r in seen if r["queue"] == q)
        if k:
            want[("t", q)] = k
    for n in h.nodes:
        deadline, got = time.time() + WAIT_S, None
        while time.time() < deadline:
            got = group_offsets(h, n)
            if got == want:
                break
            time.sleep(0.2)
        if got != want:
            h.fail("node %d reads the group's offsets %r; the consumer committed %r" %
                   (n.id, got, want))


def hw_of(queues, q):
    return next((x.get("high_watermark") for x in queues if x["queue"] == q), None)


def kill_leader_timed(h, victim, queues, controller=False):
    """kill -9 of victim, leader of some queues, timed: the producers of those
    queues stop writing until everything they wrote is acknowledged (the
    queue's high watermark reaches it), the node is killed, writing resumes
    at once, and the failover time is from the kill to the first moment a
    queue's high watermark, on a new leader, passes what was acknowledged
    before: the first acknowledged produce after the kill (polled through
    `cluster status`, so up to one poll late)."""
    qs = [q["queue"] for q in queues if q.get("leader") == victim.id]
    ps = [p for p in h.producers if p.q in qs]
    for p in ps:
        with p.lock:
            p.hold.set()
    deadline = time.time() + 5
    while ps and time.time() < deadline:
        _, now = h.status()
        if all(hw_of(now, p.q) == p.sent for p in ps):
            break
        time.sleep(0.05)
    acked = {p.q: p.sent for p in ps}
    victim.kill9()
    t_kill = time.time()
    for p in ps:
        p.hold.clear()
    if not ps:
        return
    while time.time() - t_kill < WAIT_S:
        ctl, now = h.status()
        for x in now:
            if x["queue"] in acked and x.get("leader") not in (None, victim.id) and \
                    (x.get("high_watermark") or 0) > acked[x["queue"]]:
                ms = (time.time() - t_kill) * 1000
                h.failovers.append(ms)
                h.log("failover of t/%d: %.0f ms from kill -9 of node %d%s to the first "
                      "acknowledged produce on node %d" %
                      (x["queue"], ms, victim.id, " (the controller leader too)" if controller
                       else "", x["leader"]))
                return
        time.sleep(0.02)
    h.fail("no produce acknowledged within %d s of kill -9 of node %d (queues %s)" %
           (WAIT_S, victim.id, qs))


def partition(h, what, pairs):
    hold = h.rng.uniform(2.0, 5.0)
    h.log("%s, for %.1f s" % (what, hold))
    for a, b in pairs:
        h.net.cut(a, b)
    time.sleep(hold)
    ctl, queues = h.status()
    h.net.heal()
    h.log("healed; at the end of it, as node %s saw it: controller leader %s, %s" %
          (ctl.get("answered_by") if ctl else "-", ctl.get("leader") if ctl else "-",
           ", ".join("t/%d led by %s at epoch %s, ISR %s" %
                     (q["queue"], q.get("leader"), q.get("epoch"), q.get("isr"))
                     for q in queues)))


def inject(h, kind):
    """One fault of kind; returns the node to restart later (or None)."""
    ctl, queues = h.status()
    if not ctl:
        h.log("no controller leader is known: %s skipped this round" % kind)
        return None
    live = [n for n in h.nodes if n.alive() and not n.paused]
    if kind == "kill-leader":
        q = h.rng.choice(queues) if queues else None
        victim = next((n for n in live if q and n.id == q.get("leader")), None)
    elif kind == "kill-controller":
        victim = next((n for n in live if n.id == ctl["leader"]), None)
    elif kind == "kill-follower":
        leaders = {q.get("leader") for q in queues}
        followers = [n for n in live if n.id not in leaders] or live
        victim = h.rng.choice(followers) if followers else None
    else:
        victim = h.rng.choice(live) if live else None
    if kind == "bridge":
        a, b = h.rng.sample([n.id for n in h.nodes], 2)
        partition(h, "bridge: nodes %d and %d cut off from each other, both reach node %d" %
                  (a, b, 6 - a - b), [(a, b)])
        return None
    if kind == "partition":
        how = h.rng.choice(["queue-leader", "controller", "any"])
        leaders = [q.get("leader") for q in queues if q.get("leader")]
        nid = (h.rng.choice(leaders) if how == "queue-leader" and leaders else
               ctl["leader"] if how == "controller" else h.rng.choice(h.nodes).id)
        partition(h, "partition: node %d%s cut off from both others" %
                  (nid, " (the controller leader)" if nid == ctl["leader"] else ""),
                  [(nid, n.id) for n in h.nodes if n.id != nid])
        return None
    if victim is None:
        h.log("%s: no node to act on" % kind)
        return None
    if kind == "pause":
        pause = h.rng.uniform(2.0, 4.0)
        h.log("SIGSTOP node %d for %.1f s" % (victim.id, pause))
        victim.proc.send_signal(signal.SIGSTOP)
        victim.paused = True
        time.sleep(pause)
        victim.proc.send_signal(signal.SIGCONT)
        victim.paused = False
        h.log("SIGCONT node %d" % victim.id)
        return None
    h.log("kill -9 node %d (%s)" % (victim.id, kind))
    others_up = all(n.alive() and not n.paused for n in h.nodes if n is not victim)
    if kind in ("kill-leader", "kill-controller") and others_up:
        # Timed only with both other nodes up: with one of three left there is
        # no raft majority and, below min_insync_replicas 2, no produce to
        # acknowledge (the design promises none), so there is nothing to time.
        kill_leader_timed(h, victim, queues, victim.id == ctl["leader"])
    else:
        victim.kill9()
    return victim


def read_replica(h, node, queues):
    """Offline read of every queue on node: {q: [(offset, value)]}."""
    out = {}
    for q in range(queues):
        r = h.runnel("--data", node.data, "consume", "t", "--queue", str(q), "--format", "json",
                     timeout=60)
        if r.returncode != 0:
            h.fail("node %d queue %d: offline read failed: %s" % (node.id, q, r.stderr.strip()))
            out[q] = []
            continue
        out[q] = [(o["offset"], o["value"]) for o in map(json.loads, r.stdout.splitlines())]
    return out


def check(h, sent, replicas, seen):
    for q, n in sent.items():
        want = [(i, "q%d-%d" % (q, i)) for i in range(n)]
        for nid, data in replicas.items():
            got = data.get(q, [])
            if got != want:
                bad = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
                           min(len(got), len(want)))
                h.fail("node %d queue %d: %d records, want %d; first difference at index %d: "
                       "%s vs %s" % (nid, q, len(got), len(want), bad,
                                     got[bad] if bad < len(got) else None,
                                     want[bad] if bad < len(want) else None))
        lists = {nid: data.get(q, []) for nid, data in replicas.items()}
        ref_id = min(lists)
        for nid, lst in lists.items():
            for (o1, v1), (o2, v2) in zip(lists[ref_id], lst):
                if o1 == o2 and v1 != v2:
                    h.fail("queue %d offset %d: node %d holds %r, node %d %r" %
                           (q, o1, ref_id, v1, nid, v2))
                    break
        log = dict(want)
        mine = [r for r in seen if r["queue"] == q]
        for i, r in enumerate(mine):
            if r["offset"] != i or log.get(i) != r.get("value"):
                h.fail("consumer, queue %d: record %d was offset %d %r; the log holds %r there" %
                       (q, i, r["offset"], r.get("value"), log.get(r["offset"])))
                break


def trial(args, seed):
    args.seed = seed
    h = Harness(args)
    h.log("seed %d, work %s, nodes %s" % (seed, h.work, h.servers))
    producers, consumer, poller, dead = [], None, None, []
    try:
        for n in h.nodes:
            n.start()
        h.wait_for("a controller leader and three live nodes", lambda c, q: len(c["live"]) == 3)
        r = h.runnel("topic", "create", "t", "--queues", str(args.queues), server=h.servers)
        if r.returncode != 0:
            h.fail("topic create: %s" % r.stderr.strip())
            return h
        h.wait_for("every queue led with 3 in sync",
                   lambda c, qs: len(qs) == args.queues and
                   all(len(q.get("isr", [])) == 3 for q in qs))
        producers = [Producer(h, q) for q in range(args.queues)]
        h.producers = producers
        consumer = Consumer(h)
        poller = OffsetPoller(h)
        kinds = args.kinds.split(",")
        for _ in range(args.faults):
            time.sleep(h.rng.uniform(0.5, 2.0))
            victim = inject(h, h.rng.choice(kinds))
            if victim:
                dead.append((time.time() + h.rng.uniform(1.0, 3.0), victim))
            for when, n in list(dead):
                if time.time() >= when:
                    time.sleep(max(0.0, when - time.time()))
                    h.log("restart node %d" % n.id)
                    n.start()
                    dead.remove((when, n))
        for when, n in dead:
            time.sleep(max(0.0, when - time.time()))
            h.log("restart node %d" % n.id)
            n.start()
        dead = []
        h.wait_for("every queue back to 3 in sync",
                   lambda c, qs: len(qs) == args.queues and
                   all(len(q.get("isr", [])) == 3 for q in qs))
        sent = {}
        for p in producers:
            rc, err = p.finish()
            sent[p.q] = p.sent
            h.log("producer %d: %d lines, exit %d: %s" % (p.q, p.sent, rc, err.splitlines()[-1:]))
            if rc != 0:
                h.fail("producer of queue %d exited %d: %s" % (p.q, rc, err))
        total = sum(sent.values())
        deadline = time.time() + WAIT_S
        while len(consumer.seen()) < total and time.time() < deadline:
            time.sleep(0.2)
        rc, err = consumer.finish()
        seen = consumer.seen()
        h.log("consumer: %d of %d records, exit %d" % (len(seen), total, rc))
        if rc != 0:
            h.fail("consumer exited %d: %s" % (rc, err))
        poller.finish()
        h.log("group offsets polled %d times" % poller.polls)
        check_final_offsets(h, seen, args.queues)
        for n in h.nodes:
            rc = n.stop()
            if rc != 0:
                h.fail("node %d exited %d at SIGTERM" % (n.id, rc))
        replicas = {n.id: read_replica(h, n, args.queues) for n in h.nodes}
        check(h, sent, replicas, seen)
        h.records = total
        h.log("checked %d records on 3 replicas: %d violations" % (total, len(h.failures)))
    finally:
        for p in producers:
            if p.proc.poll() is None:
                p.proc.kill()
        if consumer and consumer.proc.poll() is None:
            consumer.proc.kill()
        if poller:
            poller.stop.set()
        for n in h.nodes:
            n.kill9()
        if h.net:
            h.net.close()
        if h.failures:
            for n in h.nodes:
                print("---- node %d log (tail) ----" % n.id)
                with open(n.logpath, errors="replace") as f:
                    print("".join(f.readlines()[-30:]))
        if not args.keep:
            shutil.rmtree(h.work, ignore_errors=True)
    return h


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="bin")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--faults", type=int, default=6)
    ap.add_argument("--queues", type=int, default=2)
    ap.add_argument("--rate", type=int, default=2000, help="lines per second per producer")
    ap.add_argument("--kinds",
                    default="kill-leader,kill-controller,kill-follower,pause,partition,bridge")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    args.netns = False
    if "partition" in kinds or "bridge" in kinds:
        if os.environ.get("RUNNEL_JEPSEN_HUB") == "1":
            args.netns = True
        else:
            why = netns_reason()
            if why is None:
                # Again, in a network namespace of its own (the hub).
                env = dict(os.environ, RUNNEL_JEPSEN_HUB="1")
                os.execvpe("unshare", ["unshare", "-n", sys.executable] + sys.argv, env)
            print("jepsen: network partitions skipped: network namespaces are unavailable "
                  "here (%s); the other fault kinds run" % why, flush=True)
            args.kinds = ",".join(k for k in kinds if k not in ("partition", "bridge"))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    bad, failovers, records = 0, [], 0
    for t in range(args.trials):
        h = trial(args, seed + t)
        bad += 1 if h.failures else 0
        failovers += h.failovers
        records += h.records
    print("jepsen: %d trials, %d with violations (seeds %d..%d), %d records checked" %
          (args.trials, bad, seed, seed + args.trials - 1, records))
    if failovers:
        import statistics
        print("jepsen: failover (kill -9 of a queue leader to the first acknowledged produce): "
              "%d measured, p50 %.0f ms, max %.0f ms" %
              (len(failovers), statistics.median(failovers), max(failovers)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
