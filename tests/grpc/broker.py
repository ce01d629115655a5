"""A runneld of the test's own for tests/grpc/*.py: on loopback, over DIR/data, with
one user (alice) in DIR/auth/users, so every call must authenticate."""
import os
import signal
import subprocess
import sys
import time


def start(bindir, d, extra=()):
    """(process, "127.0.0.1:PORT", alice's token); extra: more runneld flags."""
    data, portf, auth = os.path.join(d, "data"), os.path.join(d, "port"), os.path.join(d, "auth")
    os.mkdir(auth)
    tok = subprocess.run([bindir + "/runnel", "--data", auth, "user", "add", "alice"],
                         check=True, capture_output=True, text=True).stdout.strip()
    argv = [bindir + "/runneld", "--data", data, "--users", os.path.join(auth, "users"),
            "--listen", "127.0.0.1:0", "--port-file", portf] + list(extra)
    if os.getuid() == 0:
        argv.append("--allow-root")
    log = open(os.path.join(d, "runneld.log"), "w")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(400):
        if os.path.exists(portf) and open(portf).read().strip():
            return p, "127.0.0.1:" + open(portf).read().split()[0], tok
        if p.poll() is not None:
            break
        time.sleep(0.05)
    print(open(os.path.join(d, "runneld.log")).read())
    sys.exit("runneld did not start")


def stop(p, d, show_log):
    """SIGTERM, its exit status; the end of its log printed when show_log."""
    p.send_signal(signal.SIGTERM)
    rc = p.wait(30)
    if show_log:
        print(open(os.path.join(d, "runneld.log")).read()[-4000:])
    return rc
