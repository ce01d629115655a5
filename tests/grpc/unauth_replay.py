#!/usr/bin/env python3
"""The RPC fuzz corpora sent to runneld without credentials: nothing gets in.

usage: unauth_replay.py BIN_DIR SOURCE_DIR

Starts runneld with a user (so authentication is required), creates topic
"t" (2 queues) with that user's token — the topic the RPC fuzz targets'
inputs name — and then sends, as raw request bytes over a plain gRPC
channel with no serializer of ours in the way:
  - every input of tests/fuzz/corpus/rpc_admin (its first byte picks the
    RPC, as in fuzz_rpc_admin.c), rpc_produce (Produce) and rpc_fetch
    (Fetch);
  - to every method of the service (read from proto/runnel.proto, so a new
    RPC is covered without editing this script): an empty request, 64
    random requests, and each corpus input;
each without a token, with a malformed authorization header, and with a
token naming the user with a wrong secret. Every call must end
UNAUTHENTICATED; wrong secrets are limited per address after 10 failures
(refused at once, without a key derivation, while a token verified before
still passes). Then, with the right token: topic "t" is the only topic,
both its queues are empty, and there is no group, checkpoint or pipeline;
runneld is still up and stops with status 0 on SIGTERM.
Prints a summary line per kind; exit status 0 when all hold.
"""
import glob
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker as rn_broker  # noqa: E402

import grpc

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


ADMIN = ["InitProducer", "ListOffsets", "CreateTopic", "AlterTopic", "ListTopics",
         "DescribeTopic", "RemapQueue", "ListStores", "CommitOffsets", "FetchOffsets",
         "ListGroups", "ResetGroup", "CreateCheckpoint", "ListCheckpoints", "DropCheckpoint"]


def main():
    bindir, src = sys.argv[1], sys.argv[2]
    seed = int(os.environ.get("RN_SEED", "0")) or random.randrange(1, 1 << 31)
    print(f"unauth_replay: seed {seed} (RN_SEED={seed} to replay)")
    rng = random.Random(seed)
    methods = re.findall(r"^\s*rpc\s+(\w+)\s*\(", open(os.path.join(src, "proto/runnel.proto")).read(),
                         re.M)
    corpus = {}
    for kind in ("rpc_admin", "rpc_produce", "rpc_fetch"):
        corpus[kind] = [open(f, "rb").read() for f in
                        sorted(glob.glob(os.path.join(src, "tests/fuzz/corpus", kind, "*")))]
    d = tempfile.mkdtemp(prefix="rn-unauth-")
    broker = None
    try:
        broker, addr, token = rn_broker.start(bindir, d)
        ch = grpc.insecure_channel(addr)

        def call(method, body, md, stream=False):
            path = "/runnel.v1.Runnel/" + method
            try:
                if stream:
                    for _ in ch.unary_stream(path)(body, timeout=10, metadata=md):
                        pass
                else:
                    ch.unary_unary(path)(body, timeout=10, metadata=md)
                return grpc.StatusCode.OK, ""
            except grpc.RpcError as e:
                return e.code(), e.details() or ""

        good = [("authorization", "Bearer " + token)]
        # topic "t" of 2 queues, as the fuzz targets have it: CreateTopicRequest{name="t",queues=2}
        check(call("CreateTopic", b"\x0a\x01t\x10\x02", good)[0] == grpc.StatusCode.OK,
              "topic t created with the token")
        name, secret = token.split(".", 1)
        bad_creds = [
            ("no token", []),
            ("malformed header", [("authorization", "Basic " + token)]),
            ("wrong secret", [("authorization", f"Bearer {name}.{secret[::-1]}")]),
        ]
        sends = []
        for body in corpus["rpc_admin"]:
            if body:
                sends.append((ADMIN[body[0] % len(ADMIN)], body[1:]))
        sends += [("Produce", b) for b in corpus["rpc_produce"]]
        sends += [("Fetch", b) for b in corpus["rpc_fetch"]]
        every = [b for bodies in corpus.values() for b in bodies]
        for m in methods:
            sends.append((m, b""))
            sends += [(m, rng.randbytes(rng.randrange(0, 200))) for _ in range(64)]
            sends += [(m, rng.choice(every)) for _ in range(16)]
        limited = []
        for what, md in bad_creds:
            codes = {}
            for m, body in sends:
                t0 = time.monotonic()
                c, details = call(m, body, md, stream=(m == "Query"))
                if what == "wrong secret":
                    limited.append(("too many failed" in details, time.monotonic() - t0))
                codes[c] = codes.get(c, 0) + 1
                if c != grpc.StatusCode.UNAUTHENTICATED and codes[c] == 1:
                    print(f"     {m} with {what}: {c}")
            check(list(codes) == [grpc.StatusCode.UNAUTHENTICATED],
                  f"{what}: {len(sends)} calls over {len(methods)} methods, all UNAUTHENTICATED "
                  f"({ {str(k): v for k, v in codes.items()} })")
        # auth.c invariant 5: the first 10 wrong secrets each cost a key derivation; after
        # them this address's unverified tokens are refused without one, for 10 s
        first = [i for i, (lim, _) in enumerate(limited) if lim]
        check(first and first[0] == 10 and all(lim for lim, _ in limited[10:]),
              f"wrong secrets: the limit starts at the 11th failure (first limited: "
              f"{first[:1]}) and holds for the rest")
        slow = sorted(dt for _, dt in limited[:10])[5]
        fast = sorted(dt for _, dt in limited[10:])[len(limited[10:]) // 2]
        check(fast * 3 < slow, f"a limited refusal costs no key derivation: median "
              f"{fast * 1000:.1f} ms against {slow * 1000:.1f} ms before the limit")
        check(call("ListTopics", b"", good)[0] == grpc.StatusCode.OK,
              "the token verified before still passes from the limited address")
        check(broker.poll() is None, "runneld still up")

        # nothing stored: with the right token, through runnel's own CLI
        def cli(*args):
            env = dict(os.environ, RUNNEL_TOKEN=token)
            return subprocess.run([bindir + "/runnel", "--server", addr] + list(args), env=env,
                                  capture_output=True, text=True)
        topics = [ln.split()[0] for ln in cli("topic", "list").stdout.splitlines()[1:]]
        check(topics == ["t"], f"topic list: {topics}")
        r = cli("topic", "describe", "t")
        check(r.returncode == 0 and re.search(r"\b2\b", r.stdout) is not None,
              "topic t still has 2 queues")
        for q in ("0", "1"):
            r = cli("consume", "t", "--queue", q, "--format", "json")
            check(r.returncode == 0 and r.stdout == "", f"queue {q} of t holds nothing: {r.stdout[:80]!r}")
        for what in ("group", "pipeline"):
            r = cli(what, "list")
            rows = r.stdout.splitlines()[1:]
            check(r.returncode == 0 and rows == [], f"{what} list: no rows ({rows})")
    finally:
        if broker:
            rc = rn_broker.stop(broker, d, bool(FAILS))
            check(rc == 0, f"runneld stopped with status {rc}")
        shutil.rmtree(d, ignore_errors=True)
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
