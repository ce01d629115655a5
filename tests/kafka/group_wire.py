#!/usr/bin/python3
"""group_wire.py BOOT — the group APIs of runneld's Kafka front at the wire
level, for tests/test_kafka_coord.c: requests built by hand (non-flexible
versions), so the cases no client library sends on demand are covered:
MEMBER_ID_REQUIRED, a rebalance completed by its timeout without a member
that did not rejoin, generation and member checks, LeaveGroup v3 batches,
commits refused per partition, DescribeGroups of unknown groups, and
malformed requests that close only their own connection.

Prints one line per check; exits 0 when all pass, 1 at the first failure.
"""
import socket
import struct
import sys
import time


def s(x):
    if x is None:
        return struct.pack(">h", -1)
    b = x.encode()
    return struct.pack(">h", len(b)) + b


def by(b):
    return struct.pack(">i", len(b)) + b


def arr(items):
    return struct.pack(">i", len(items)) + b"".join(items)


def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)


class R:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def i8(self): return self.take(">b")
    def i16(self): return self.take(">h")
    def i32(self): return self.take(">i")
    def i64(self): return self.take(">q")

    def str(self):
        n = self.i16()
        if n < 0:
            return None
        v = self.b[self.p:self.p + n].decode()
        self.p += n
        return v

    def bytes(self):
        n = self.i32()
        if n < 0:
            return None
        v = self.b[self.p:self.p + n]
        self.p += n
        return v


class Conn:
    def __init__(self, boot, cid="wire"):
        host, port = boot.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        self.cid, self.corr = cid, 0

    def send(self, api, ver, body):
        self.corr += 1
        hdr = i16(api) + i16(ver) + i32(self.corr) + s(self.cid)
        self.sock.sendall(i32(len(hdr) + len(body)) + hdr + body)
        return self.corr

    def send_raw(self, frame):
        self.sock.sendall(frame)

    def recv(self):
        n = struct.unpack(">i", self.read(4))[0]
        b = self.read(n)
        r = R(b)
        r.i32()                  # correlation id
        return r

    def read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError("connection closed")
            out += chunk
        return out

    def call(self, api, ver, body):
        self.send(api, ver, body)
        return self.recv()

    def closed(self):
        """True when the broker closed the connection (nothing answered)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return True


def check(name, ok, detail=""):
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, (": " + str(detail)) if detail else ""))
    if not ok:
        sys.exit(1)


META = b"\x00\x00\x00\x00\x00\x01\x00\x02wt\xff\xff\xff\xff"   # a ConsumerProtocol subscription


def join_body(ver, group, member, session=4000, rebalance=1500, protos=(("range", META),)):
    b = s(group) + i32(session)
    if ver >= 1:
        b += i32(rebalance)
    b += s(member)
    if ver >= 5:
        b += s(None)
    b += s("consumer") + arr([s(n) + by(m) for n, m in protos])
    return b


def join_resp(r, ver):
    if ver >= 2:
        r.i32()
    out = {"err": r.i16(), "gen": r.i32(), "proto": r.str(), "leader": r.str(),
           "member": r.str()}
    n = r.i32()
    out["members"] = []
    for _ in range(n):
        mid = r.str()
        if ver >= 5:
            r.str()
        out["members"].append((mid, r.bytes()))
    return out


def join(conn, ver, group, member, **kw):
    return join_resp(conn.call(11, ver, join_body(ver, group, member, **kw)), ver)


def heartbeat(conn, group, gen, member):
    r = conn.call(12, 3, s(group) + i32(gen) + s(member) + s(None))
    r.i32()
    return r.i16()


def sync(conn, group, gen, member, assignments):
    r = conn.call(14, 3, s(group) + i32(gen) + s(member) + s(None) +
                  arr([s(m) + by(a) for m, a in assignments]))
    r.i32()
    return r.i16(), r.bytes()


def commit(conn, ver, group, gen, member, topic, parts):
    b = s(group) + i32(gen) + s(member)
    if ver >= 7:
        b += s(None)
    if ver <= 4:
        b += i64(-1)
    ps = []
    for p, off in parts:
        e = i32(p) + i64(off)
        if ver >= 6:
            e += i32(-1)
        ps.append(e + s("meta"))
    r = conn.call(8, ver, b + arr([s(topic) + arr(ps)]))
    if ver >= 3:
        r.i32()
    out = {}
    for _ in range(r.i32()):
        r.str()
        for _ in range(r.i32()):
            p = r.i32()
            out[p] = r.i16()
    return out


def offset_fetch(conn, ver, group, topics):
    body = s(group) + (i32(-1) if topics is None else
                       arr([s(t) + arr([i32(p) for p in ps]) for t, ps in topics]))
    r = conn.call(9, ver, body)
    if ver >= 3:
        r.i32()
    out = {}
    for _ in range(r.i32()):
        t = r.str()
        for _ in range(r.i32()):
            p, off = r.i32(), r.i64()
            if ver >= 5:
                r.i32()
            r.str()
            out[(t, p)] = (off, r.i16())
    top = r.i16() if ver >= 2 else 0
    return out, top


def describe(conn, groups):
    r = conn.call(15, 4, arr([s(g) for g in groups]) + i8(0))
    r.i32()
    out = {}
    for _ in range(r.i32()):
        err, gid, state = r.i16(), r.str(), r.str()
        r.str()
        r.str()
        members = []
        for _ in range(r.i32()):
            members.append(r.str())
            r.str(); r.str(); r.str(); r.bytes(); r.bytes()
        r.i32()
        out[gid] = (err, state, members)
    return out


def main(boot):
    c = Conn(boot)
    # A topic of two partitions' worth: auto-created by Metadata v1.
    c.call(3, 1, arr([s("wt")]))

    # FindCoordinator: this broker for groups; transactions refused.
    r = c.call(10, 2, s("g1") + i8(0))
    r.i32()
    err, msg, node, host, port = r.i16(), r.str(), r.i32(), r.str(), r.i32()
    check("FindCoordinator v2 group", err == 0 and node == 0 and "%s:%d" % (host, port) == boot,
          (err, node, host, port))
    r = c.call(10, 1, s("txn") + i8(1))
    r.i32()
    check("FindCoordinator v1 transaction refused", r.i16() == 15)
    r = c.call(10, 0, s("g1"))
    check("FindCoordinator v0", r.i16() == 0 and r.i32() == 0)
    # InitProducerId: idempotent producers get an id; a transactional id is refused.
    r = c.call(22, 1, s(None) + i32(60000))
    r.i32()
    err, pid, epoch = r.i16(), r.i64(), r.i16()
    check("InitProducerId v1 idempotent", err == 0 and pid >= 0 and epoch >= 0, (err, pid, epoch))
    r = c.call(22, 0, s("txn-1") + i32(60000))
    r.i32()
    err, pid, epoch = r.i16(), r.i64(), r.i16()
    check("InitProducerId v0 transactional refused", err == 42 and pid == -1 and epoch == -1,
          (err, pid, epoch))

    # JoinGroup v5: MEMBER_ID_REQUIRED, then the join with the given id.
    a = Conn(boot, "alpha")
    j = join(a, 5, "g1", "")
    check("JoinGroup v5 first join: MEMBER_ID_REQUIRED", j["err"] == 79 and
          j["member"].startswith("alpha-"), j)
    amid = j["member"]
    j = join(a, 5, "g1", amid)
    check("JoinGroup v5 rejoin: generation 1, leader, own metadata", j["err"] == 0 and
          j["gen"] == 1 and j["leader"] == amid and j["members"] == [(amid, META)], j)
    err, asg = sync(a, "g1", 1, amid, [(amid, b"A-assignment")])
    check("SyncGroup leader", err == 0 and asg == b"A-assignment", (err, asg))
    check("Heartbeat stable", heartbeat(a, "g1", 1, amid) == 0)
    check("Heartbeat wrong generation", heartbeat(a, "g1", 7, amid) == 22)
    check("Heartbeat unknown member", heartbeat(a, "g1", 1, "nobody") == 25)

    # A v0 member joins without MEMBER_ID_REQUIRED; alpha never rejoins, so
    # the rebalance completes at alpha's rebalance timeout without it.
    b = Conn(boot, "beta")
    t0 = time.time()
    b.send(11, 0, join_body(0, "g1", "", session=1500))
    time.sleep(0.3)
    check("Heartbeat during the rebalance", heartbeat(a, "g1", 1, amid) == 27)
    j = join_resp(b.recv(), 0)
    waited = time.time() - t0
    bmid = j["member"]
    check("JoinGroup v0 completes at the rebalance timeout without the silent member",
          j["err"] == 0 and j["gen"] == 2 and j["leader"] == bmid and len(j["members"]) == 1
          and 1.0 <= waited < 3.5, (j, waited))
    check("the removed member's heartbeat", heartbeat(a, "g1", 2, amid) == 25)
    check("SyncGroup old generation", sync(b, "g1", 1, bmid, [])[0] == 22)
    err, asg = sync(b, "g1", 2, bmid, [(bmid, b"B")])
    check("SyncGroup v3 leader of generation 2", err == 0 and asg == b"B", (err, asg))

    # Commits follow the generation; each partition is checked.
    got = commit(b, 7, "g1", 2, bmid, "wt", [(0, 0)])
    check("OffsetCommit v7 by the member", got == {0: 0}, got)
    got = commit(b, 6, "g1", 1, bmid, "wt", [(0, 0)])
    check("OffsetCommit old generation", got == {0: 22}, got)
    got = commit(c, 2, "g1", -1, "", "wt", [(0, 0)])
    check("OffsetCommit generation -1 to a group with members", got == {0: 25}, got)
    got = commit(c, 2, "simple", -1, "", "wt", [(0, 0), (9, 0)])
    check("OffsetCommit v2 simple group: partition 9 unknown", got == {0: 0, 9: 3}, got)
    got = commit(c, 3, "simple", -1, "", "wt", [(0, 10**9)])
    check("OffsetCommit beyond the high watermark", got == {0: 1}, got)
    got = commit(c, 4, "simple", -1, "", "nosuchtopic", [(0, 0)])
    check("OffsetCommit unknown topic", got == {0: 3}, got)
    got = commit(c, 2, "bad/group", -1, "", "wt", [(0, 0)])
    check("OffsetCommit invalid group id", got == {0: 24}, got)
    offs, top = offset_fetch(c, 1, "simple", [("wt", [0, 3])])
    check("OffsetFetch v1", offs == {("wt", 0): (0, 0), ("wt", 3): (-1, 0)}, offs)
    offs, top = offset_fetch(c, 5, "g1", None)
    check("OffsetFetch v5 null topics", offs == {("wt", 0): (0, 0)} and top == 0, (offs, top))

    # JoinGroup refusals.
    check("JoinGroup invalid group id", join(c, 5, "bad group", "")["err"] == 24)
    check("JoinGroup session timeout too small", join(c, 5, "g2", "", session=10)["err"] == 26)
    check("JoinGroup unknown member id", join(c, 5, "g1", "ghost")["err"] == 25)
    check("JoinGroup other protocol", join(c, 3, "g1", "", protos=(("x", b""),))["err"] == 23)

    # DescribeGroups: live, known by offsets only, unknown.
    d = describe(c, ["g1", "simple", "nosuch"])
    check("DescribeGroups", d["g1"][:2] == (0, "Stable") and d["g1"][2] == [bmid] and
          d["simple"] == (0, "Empty", []) and d["nosuch"] == (0, "Dead", []), d)
    r = c.call(16, 2, b"")
    r.i32()
    err = r.i16()
    listed = [(r.str(), r.str()) for _ in range(r.i32())]
    check("ListGroups", err == 0 and ("g1", "consumer") in listed and ("simple", "") in listed,
          listed)

    # LeaveGroup v3: a batch with an unknown member.
    r = c.call(13, 3, s("g1") + arr([s(bmid) + s(None), s("ghost") + s(None)]))
    r.i32()
    err = r.i16()
    res = [(r.str(), r.str(), r.i16()) for _ in range(r.i32())]
    check("LeaveGroup v3 batch", err == 0 and res == [(bmid, None, 0), ("ghost", None, 25)], res)
    d = describe(c, ["g1"])
    check("the group after everyone left", d["g1"] == (0, "Empty", []), d)

    # Malformed requests close their connection only.
    x = Conn(boot)
    x.send(11, 5, s("g3") + i32(4000) + i32(4000) + s("") + s(None) + s("consumer") +
           i32(0x7fffffff))
    check("JoinGroup with a huge protocol count closes the connection", x.closed())
    x = Conn(boot)
    x.send(14, 3, s("g1") + i32(1) + s("m") + s(None) + i32(0x10000000) + s("m"))
    check("SyncGroup with a huge assignment count closes the connection", x.closed())
    x = Conn(boot)
    x.send(8, 7, s("g1") + i32(1) + s("m") + s(None) + arr([s("wt") + i32(3) + i32(0)]))
    check("a truncated OffsetCommit closes the connection", x.closed())
    r = c.call(10, 2, s("g1") + i8(0))
    r.i32()
    check("the broker still answers", r.i16() == 0)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
