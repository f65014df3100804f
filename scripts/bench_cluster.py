#!/usr/bin/env python3
"""3-member clusters side by side: oxcd against etcd, on this machine.

For each server: start three members on 127.0.0.1 (the flags of
scripts/cluster), find the leader, run oxcd-bench's put workload with 100
clients against the leader, then kill -9 the leader and time how long the two
others take to agree on a new one (polling Status every 10 ms); the killed
member is restarted between rounds. Prints one JSON object per measurement
and a summary table.

usage: bench_cluster.py --oxcd BIN --etcd BIN --bench BIN [--rounds N] [--total N]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench import free_port, median, version_of  # scripts/bench.py


class Member:
    def __init__(self, binary, name, workdir):
        self.binary, self.name = binary, name
        self.client, self.peer = free_port(), free_port()
        self.data = os.path.join(workdir, name + ".etcd")
        self.log = os.path.join(workdir, name + ".log")
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.client}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer}"

    def start(self, initial_cluster):
        cmd = [self.binary, "--name", self.name, "--data-dir", self.data,
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", self.peer_url,
               "--initial-advertise-peer-urls", self.peer_url,
               "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
               "--initial-cluster-token", "bench-cluster", "--log-level", "warn"]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def kill9(self):
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None


def status(etcdctl, member):
    """(member id, leader id) from Maintenance.Status, or None."""
    try:
        p = subprocess.run([etcdctl, f"--endpoints={member.url}", "endpoint", "status",
                            "-w", "json", "--command-timeout=1s", "--dial-timeout=1s"],
                           capture_output=True, text=True, timeout=3,
                           env={"ETCDCTL_API": "3", "PATH": os.environ.get("PATH", "")})
        if p.returncode != 0:
            return None
        s = json.loads(p.stdout)[0]["Status"]
        return s["header"]["member_id"], s["leader"]
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return None


def agreed_leader(etcdctl, members):
    st = [status(etcdctl, m) for m in members if m.proc]
    if not st or any(s is None for s in st):
        return None
    leaders = {s[1] for s in st}
    if len(leaders) != 1 or 0 in leaders:
        return None
    lid = leaders.pop()
    for m, s in zip([m for m in members if m.proc], st):
        if s[0] == lid:
            return m
    return None


def wait_leader(etcdctl, members, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = agreed_leader(etcdctl, members)
        if m:
            return m
        time.sleep(0.01)
    raise SystemExit("no leader agreed on in time")


def measure(kind, binary, args, workdir):
    members = [Member(binary, f"m{i}", workdir) for i in range(3)]
    initial = ",".join(f"{m.name}={m.peer_url}" for m in members)
    for m in members:
        m.start(initial)
    results = []
    try:
        leader = wait_leader(args.etcdctl, members)
        for r in range(args.rounds):
            p = subprocess.run([args.bench, "--endpoint", leader.url, "put", "--clients", "100",
                                "--conns", "10", "--total", str(args.total), "--key-size", "8",
                                "--value-size", "256", "--duration", "60"],
                               capture_output=True, text=True, timeout=180)
            if p.returncode != 0:
                raise SystemExit(f"{kind}: oxcd-bench failed: {p.stderr[-500:]}")
            put = json.loads(p.stdout.strip().splitlines()[-1])
            t0 = time.monotonic()
            leader.kill9()
            others = [m for m in members if m.proc]
            new = wait_leader(args.etcdctl, others)
            failover = time.monotonic() - t0
            rec = {"server": kind, "round": r + 1, "put": put, "failover_s": round(failover, 3)}
            print(json.dumps(rec), flush=True)
            results.append(rec)
            leader.start(initial)
            time.sleep(2)
            leader = wait_leader(args.etcdctl, members)
            del new
    finally:
        for m in members:
            m.stop()
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oxcd", required=True)
    ap.add_argument("--etcd", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--etcdctl", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--total", type=int, default=50000)
    ap.add_argument("--out", help="also write the results as markdown to this file")
    args = ap.parse_args()
    summary = {}
    raw = []
    for kind, binary in (("oxcd", args.oxcd), ("etcd", args.etcd)):
        workdir = tempfile.mkdtemp(prefix=f"bench-cluster-{kind}.")
        try:
            res = measure(kind, binary, args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        raw += res
        summary[kind] = {
            "puts_per_s": median([r["put"]["ops_per_sec"] for r in res]),
            "p50_ms": median([r["put"].get("p50_ms") for r in res]),
            "p99_ms": median([r["put"].get("p99_ms") for r in res]),
            "failover_s": median([r["failover_s"] for r in res]),
        }
    print("\n| 3 members | puts/s (100 clients) | p50 ms | p99 ms | new leader after kill -9 (s) |")
    print("|---|---|---|---|---|")
    for kind, s in summary.items():
        print(f"| {kind} | {s['puts_per_s']} | {s['p50_ms']} | {s['p99_ms']} | {s['failover_s']} |")
    print(json.dumps(summary))
    if args.out:
        write_markdown(args, summary, raw)


def write_markdown(args, summary, raw):
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip() or "?"
    lines = [
        "# 3-member clusters: oxcd and etcd side by side",
        "",
        "Written by `scripts/bench-cluster` (scripts/bench_cluster.py) at " + rev
        + f" on {time.strftime('%Y-%m-%d', time.gmtime())}, on this machine"
        + f" ({os.cpu_count()} CPUs): three members of each server on 127.0.0.1"
        + " (the flags of `scripts/cluster`), one server at a time.",
        "",
        f"- oxcd: `{version_of(args.oxcd)}`; etcd: `{version_of(args.etcd)}`.",
        f"- Put: `oxcd-bench put --clients 100 --conns 10 --total {args.total}"
        + " --key-size 8 --value-size 256` against the leader.",
        "- Failover: right after each put round the leader gets SIGKILL; the time until"
        + " the two others agree on a new leader (Status polled every 10 ms with"
        + " etcdctl); the killed member is restarted before the next round.",
        f"- {args.rounds} rounds per server; medians below, every round after.",
        "",
        "| 3 members | puts/s | p50 ms | p99 ms | new leader after kill -9 (s) |",
        "|---|---|---|---|---|",
    ]
    for kind, s in summary.items():
        lines.append(f"| {kind} | {s['puts_per_s']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f}"
                     f" | {s['failover_s']:.2f} |")
    lines += ["", "| server | round | puts/s | p50 ms | p99 ms | failover s |",
              "|---|---|---|---|---|---|"]
    for r in raw:
        p = r["put"]
        lines.append(f"| {r['server']} | {r['round']} | {p['ops_per_sec']:.0f} | {p['p50_ms']:.2f}"
                     f" | {p['p99_ms']:.2f} | {r['failover_s']:.2f} |")
    lines += ["", "Both raft implementations draw the election timeout from [1 s, 2 s)"
              " (`--election-timeout 1000`) once per term, so the failover time is the"
              " smaller of the two survivors' draws and varies from round to round.", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
