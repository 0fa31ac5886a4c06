"""TCP connect()+close() latency probe and its server, for `npm run bench -- proxy`.

The client and server of svc-bench.sh (same directory; copied from the podnet team's shared
baseline script ../shared/bench/svc-bench.sh), unchanged in what they measure, so the figures
of podnet's rules and of the raw-tool rulesets come from the same probe:

  connect.py server HOST PORT                 accept and close, forever
  connect.py client LABEL HOST PORT N WARMUP  one JSON line: latency in microseconds
  connect.py interleave N WARMUP LABEL=HOST:PORT...
                                              the same for several targets, one connect to
                                              each in turn per round (so all of them see the
                                              same moments of a shared machine): a JSON line each
"""
import json, socket, statistics, sys, time


def server(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(4096)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.close()


def one(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t0 = time.perf_counter_ns()
    s.connect((host, port))
    s.close()
    t1 = time.perf_counter_ns()
    return (t1 - t0) / 1000.0


def client(label, host, port, n, warm):
    port, n, warm = int(port), int(n), int(warm)
    v = socket.create_connection((host, port), timeout=3); v.close()   # reachability check
    lat = []
    for i in range(warm + n):
        us = one(host, port)
        if i >= warm:
            lat.append(us)
    report(label, host, port, n, lat)


def interleave(n, warm, targets):
    n, warm = int(n), int(warm)
    ts = []
    for t in targets:
        label, _, hp = t.rpartition("=")
        host, _, port = hp.rpartition(":")
        ts.append((label, host, int(port), []))
    for _, host, port, _ in ts:
        v = socket.create_connection((host, port), timeout=3); v.close()
    for i in range(warm + n):
        for _, host, port, lat in ts:
            us = one(host, port)
            if i >= warm:
                lat.append(us)
    for label, host, port, lat in ts:
        report(label, host, port, n, lat)


def report(label, host, port, n, lat):
    lat.sort()
    def pct(p): return round(lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))], 1)
    print(json.dumps({"label": label, "target": f"{host}:{port}", "n": n,
                      "median_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
                      "min_us": round(lat[0], 1), "max_us": round(lat[-1], 1),
                      "mean_us": round(statistics.fmean(lat), 1)}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"] and len(sys.argv) == 4:
        server(*sys.argv[2:])
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 7:
        client(*sys.argv[2:])
    elif sys.argv[1:2] == ["interleave"] and len(sys.argv) >= 5:
        interleave(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
