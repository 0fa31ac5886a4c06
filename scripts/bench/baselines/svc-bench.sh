#!/usr/bin/env bash
# Copied from the podnet team's shared baseline script (../shared/bench/svc-bench.sh, the
# figures of ../shared/bench/BASELINES.md) so that `npm run bench -- proxy` does not depend on
# anything outside this repository at run time. Changes to the original, all opt-in (the
# defaults behave as the original): -t (namespace prefix, so podnet's sweeper recognises
# leftovers), -d (the nft layout the dp phase loads: the kube-proxy layout takes ~147 s at
# S=10,000), -q (skip the slow read-back dumps and the checks built on them).
#
# svc-bench.sh -- physical limits of Kubernetes-style service VIP rules on this kernel.
#
# Generates kube-proxy-shaped rule sets for S services x E endpoints and measures,
# entirely inside throw-away network namespaces (prefix "svb-"):
#   ipt : iptables-restore full load (fresh netns per rep), one-endpoint partial
#         sync via `iptables-restore --noflush`, `iptables-save -t nat | wc -l`
#   nft : `nft -f` full load (fresh netns per rep), one-endpoint transaction,
#         `nft list ruleset | wc -l`
#   nftn: like nft, but each service's endpoint vmap is a *named* map (@eps-...)
#         instead of an anonymous one (avoids per-anon-set transaction scans)
#   nftr: like nft, but no per-service map: E rules `numgen random mod (E-k) == 0 goto`
#         (iptables-statistic style), so the only set is service-ips
#   dp  : TCP connect+close latency client-netns -> router-netns (rules) -> server-netns
#         to the first / last declared VIP, iptables vs nftables, plus baselines.
#
# Usage: svc-bench.sh [-p ipt,nft,nftn,nftr,dp] [-r FULL_REPS] [-u UPD_REPS] [-n CONNECTS]
#                     [-w WARMUP] [-o OUTDIR] [-t NS_PREFIX] [-d nft|nftn|nftr] [-q] S E
# Needs: root, iproute2, iptables (nf_tables backend), nft, conntrack, python3, bash>=5.
# Never touches the root netns: every address/route/rule lives in an svb-* netns,
# and all namespaces + the server process are removed on exit (trap).
#
# Addressing: ClusterIPs 10.96.0.0/12 (10.96.0.1 = service 0), endpoints 10.244.0.0/14
# (unique per endpoint; 10.244.255.0/24 is skipped and reserved for the benchmark
# server 10.244.255.1). Service port tcp/80 -> endpoint port 8080. Services 0 and S-1
# ("probe" services) have all E endpoints = 10.244.255.1:8080 so the data-path test
# can reach them; this does not change rule counts.
set -euo pipefail

PHASES="ipt,nft,dp"; FULL_REPS=3; UPD_REPS=5; CONNECTS=2000; WARMUP=200; OUT=""
NS_PREFIX=""; DP_NFT=nft; QUICK=0
while getopts "p:r:u:n:w:o:t:d:qh" opt; do
  case $opt in
    p) PHASES=$OPTARG ;; r) FULL_REPS=$OPTARG ;; u) UPD_REPS=$OPTARG ;;
    n) CONNECTS=$OPTARG ;; w) WARMUP=$OPTARG ;; o) OUT=$OPTARG ;;
    t) NS_PREFIX=$OPTARG ;; d) DP_NFT=$OPTARG ;; q) QUICK=1 ;;
    *) sed -n '2,38p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 2 ]] || { sed -n '2,38p' "$0"; exit 2; }
[[ $DP_NFT =~ ^(nft|nftn|nftr)$ ]] || { echo "-d: nft, nftn or nftr" >&2; exit 2; }
[[ -z $NS_PREFIX || $NS_PREFIX =~ ^[a-z0-9-]{1,40}$ ]] || { echo "-t: [a-z0-9-], at most 40 chars" >&2; exit 2; }
S=$1; E=$2
[[ $S =~ ^[0-9]+$ && $E =~ ^[0-9]+$ && $S -ge 2 && $E -ge 1 ]] || { echo "S>=2, E>=1 integers" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "must run as root" >&2; exit 1; }

OUT=${OUT:-$PWD/svc-bench-out-S$S-E$E}
mkdir -p "$OUT"
WORK=$(mktemp -d)
TAG=${NS_PREFIX:-svb-$$}       # netns name prefix for this run
SERVER_IP=10.244.255.1; SERVER_PORT=8080; RTR_SRV_IP=10.244.255.254
CLI_IP=10.0.1.2; RTR_CLI_IP=10.0.1.1
RESULTS=$OUT/results.tsv       # mode metric rep wall_us user_s sys_s load1_before
COUNTS=$OUT/counts.tsv         # mode metric value
DPATH=$OUT/datapath.jsonl      # one JSON object per latency probe
ERR=$OUT/stderr.log
: >"$RESULTS"; : >"$COUNTS"; : >"$DPATH"; : >"$ERR"

NSLIST=(); SRV_PID=""
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cleanup() {
  set +e
  if [[ -n $SRV_PID ]]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi
  for ns in "${NSLIST[@]}"; do
    ip netns exec "$ns" nft flush ruleset 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkns() { ip netns add "$1"; NSLIST+=("$1"); ip -n "$1" link set lo up; }
delns() {
  local ns=$1 keep=() x
  ip netns exec "$ns" nft flush ruleset 2>/dev/null || true
  ip netns del "$ns"
  for x in "${NSLIST[@]}"; do [[ $x == "$ns" ]] || keep+=("$x"); done
  NSLIST=("${keep[@]}")
  sleep 1   # let async netns teardown settle before the next timed step
}

# ---------------------------------------------------------------- helpers (files)
write_helpers() {
# timed.sh ERRFILE OUTFILE CMD... -> "wall_us user_s sys_s" (stdout of CMD -> OUTFILE)
cat >"$WORK/timed.sh" <<'EOF'
#!/usr/bin/env bash
err=$1 out=$2; shift 2
TIMEFORMAT='%3U %3S'
t0=$EPOCHREALTIME
{ time "$@" >"$out" 2>>"$err"; } 2>"$err.cpu"
rc=$?
t1=$EPOCHREALTIME
(( rc == 0 )) || { echo "command failed rc=$rc: $*" >>"$err"; exit "$rc"; }
echo "$(( ${t1/./} - ${t0/./} )) $(tail -n1 "$err.cpu")"
EOF
chmod +x "$WORK/timed.sh"

cat >"$WORK/gen.py" <<'EOF'
"""Generate kube-proxy-shaped iptables-restore and nft inputs.

gen.py S E OUTDIR SERVER_IP UPD_REPS
Writes: ipt-full.rules, ipt-upd-min-M.rules, ipt-upd-kp-M.rules (M=1..U),
        {nft,nftn,nftr}-full.nft, {nft,nftn,nftr}-upd-M.nft, meta.env
"""
import base64, hashlib, ipaddress, os, sys

S, E = int(sys.argv[1]), int(sys.argv[2])
out, server_ip, U = sys.argv[3], sys.argv[4], int(sys.argv[5])
VIP_BASE = int(ipaddress.IPv4Address("10.96.0.0"))
EP_BASE = int(ipaddress.IPv4Address("10.244.0.0"))
if S + 1 >= 1 << 20:
    sys.exit("too many services for 10.96.0.0/12")
if S * E + 3 * U + 0x200 >= 1 << 18:
    sys.exit("too many endpoints for 10.244.0.0/14")

def ip4(n): return str(ipaddress.IPv4Address(n))
def vip(i): return ip4(VIP_BASE + 1 + i)
def ep_ip(j):                      # j-th endpoint address, skipping 10.244.255.0/24
    n = j + 1
    if n >= 0xFF00: n += 0x100
    return ip4(EP_BASE + n)
def h(s, n=16): return base64.b32encode(hashlib.sha256(s.encode()).digest()).decode()[:n]
def spn(i): return f"ns{i // 1000}/svc{i}:http"           # service port name
def probe(i): return i in (0, S - 1)
def orig_eps(i):                   # list of (ip, tag); tag keeps chain names unique
    return [(server_ip if probe(i) else ep_ip(i * E + k), str(k)) for k in range(E)]

# --- iptables (kube-proxy "large cluster mode": no comments on SVC/SEP rules)
def ipt_svc(i): return "KUBE-SVC-" + h(spn(i) + "tcp")
def ipt_sep(i, ep): return "KUBE-SEP-" + h(spn(i) + "tcp" + ep[0] + ":8080#" + ep[1])
def ipt_services_rules(lines):
    for i in range(S):
        lines.append(f'-A KUBE-SERVICES -m comment --comment "{spn(i)} cluster IP" '
                     f'-p tcp -m tcp -d {vip(i)}/32 --dport 80 -j {ipt_svc(i)}')
def ipt_svc_rules(lines, i, eps):
    n = len(eps)
    for k, ep in enumerate(eps):
        stat = (f"-m statistic --mode random --probability {1.0 / (n - k):0.10f} "
                if k < n - 1 else "")            # kube-proxy omits it on the last rule
        lines.append(f"-A {ipt_svc(i)} {stat}-j {ipt_sep(i, ep)}")
def ipt_sep_rules(lines, i, ep):
    c = ipt_sep(i, ep)
    lines.append(f"-A {c} -s {ep[0]}/32 -j KUBE-MARK-MASQ")
    lines.append(f"-A {c} -p tcp -m tcp -j DNAT --to-destination {ep[0]}:8080")

def ipt_full():
    L = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
         ":POSTROUTING ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
         ":KUBE-POSTROUTING - [0:0]"]
    for i in range(S):
        L.append(f":{ipt_svc(i)} - [0:0]")
        L.extend(f":{ipt_sep(i, ep)} - [0:0]" for ep in orig_eps(i))
    L += ['-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
          '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
          '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
          "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
          "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
          "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
          '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
          "-j MASQUERADE --random-fully"]
    ipt_services_rules(L)
    for i in range(S):
        eps = orig_eps(i)
        ipt_svc_rules(L, i, eps)
        for ep in eps: ipt_sep_rules(L, i, ep)
    L.append("COMMIT")
    return L

def ipt_update(i, old_eps, new_eps, with_services):
    """Partial sync: re-declare (=flush) and rewrite only the changed service's chains;
    stale SEP chain is declared (flushed) then deleted, as kube-proxy does.
    with_services=True additionally rewrites KUBE-SERVICES (what kube-proxy's partial
    sync also does: top-level chains are always rewritten)."""
    L = ["*nat"]
    if with_services: L.append(":KUBE-SERVICES - [0:0]")
    L.append(f":{ipt_svc(i)} - [0:0]")
    added = [ep for ep in new_eps if ep not in old_eps]
    stale = [ep for ep in old_eps if ep not in new_eps]
    L.extend(f":{ipt_sep(i, ep)} - [0:0]" for ep in added + stale)
    if with_services: ipt_services_rules(L)
    ipt_svc_rules(L, i, new_eps)
    for ep in added: ipt_sep_rules(L, i, ep)
    L.extend(f"-X {ipt_sep(i, ep)}" for ep in stale)
    L.append("COMMIT")
    return L

# --- nftables (knftables-style flat command stream, as kube-proxy --proxy-mode=nftables)
T = "ip kube-proxy"
def nft_svc(i): return f"service-{h(spn(i) + 'tcp', 8)}-ns{i // 1000}/svc{i}/tcp/p80"
def nft_ep(i, ep):
    return f"endpoint-{h(spn(i) + 'tcp' + ep[0] + '#' + ep[1], 8)}-ns{i // 1000}/svc{i}/tcp/p80__{ep[0]}/8080"
def nft_ep_rules(L, i, ep):
    c = nft_ep(i, ep)
    L.append(f"add rule {T} {c} ip saddr {ep[0]} jump mark-for-masquerade")
    L.append(f"add rule {T} {c} meta l4proto tcp dnat to {ep[0]}:8080")
STYLE = "anon"                    # anon (kube-proxy) | named | rules
def nft_map(i): return f"eps-{h(spn(i) + 'tcp', 8)}-svc{i}"
def nft_map_elems(i, eps):
    return ", ".join(f"{k} : goto {nft_ep(i, ep)}" for k, ep in enumerate(eps))
def nft_svc_rule(L, i, eps):
    n = len(eps)
    if STYLE == "anon":
        L.append(f"add rule {T} {nft_svc(i)} numgen random mod {n} vmap {{ {nft_map_elems(i, eps)} }}")
    elif STYLE == "named":
        L.append(f"add rule {T} {nft_svc(i)} numgen random mod {n} vmap @{nft_map(i)}")
    else:
        for k, ep in enumerate(eps):
            cond = f"numgen random mod {n - k} == 0 " if k < n - 1 else ""
            L.append(f"add rule {T} {nft_svc(i)} {cond}goto {nft_ep(i, ep)}")

def nft_full():
    L = [f'add table {T} {{ comment "rules for kube-proxy" ; }}',
         f"add chain {T} mark-for-masquerade",
         f"add rule {T} mark-for-masquerade meta mark set meta mark or 0x4000",
         f"add chain {T} masquerading",
         f"add rule {T} masquerading meta mark & 0x4000 == 0 return",
         f"add rule {T} masquerading meta mark set meta mark xor 0x4000",
         f"add rule {T} masquerading masquerade fully-random",
         f"add map {T} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
         f"add chain {T} services",
         f"add rule {T} services ip daddr . meta l4proto . th dport vmap @service-ips",
         f"add chain {T} nat-prerouting {{ type nat hook prerouting priority dstnat ; }}",
         f"add rule {T} nat-prerouting jump services",
         f"add chain {T} nat-output {{ type nat hook output priority -100 ; }}",
         f"add rule {T} nat-output jump services",
         f"add chain {T} nat-postrouting {{ type nat hook postrouting priority srcnat ; }}",
         f"add rule {T} nat-postrouting jump masquerading"]
    for i in range(S):
        L.append(f"add chain {T} {nft_svc(i)}")
        L.extend(f"add chain {T} {nft_ep(i, ep)}" for ep in orig_eps(i))
        if STYLE == "named":
            L.append(f"add map {T} {nft_map(i)} {{ typeof numgen random mod {E} : verdict ; }}")
    for i in range(S):
        eps = orig_eps(i)
        for ep in eps: nft_ep_rules(L, i, ep)
        if STYLE == "named":
            L.append(f"add element {T} {nft_map(i)} {{ {nft_map_elems(i, eps)} }}")
        nft_svc_rule(L, i, eps)
    for i in range(S):
        L.append(f"add element {T} service-ips {{ {vip(i)} . tcp . 80 : goto {nft_svc(i)} }}")
    return L

def nft_update(i, old_eps, new_eps):
    """One transaction: add new endpoint chain(s), flush + refill the service chain,
    delete the stale endpoint chain(s)."""
    L = []
    added = [ep for ep in new_eps if ep not in old_eps]
    stale = [ep for ep in old_eps if ep not in new_eps]
    for ep in added:
        L.append(f"add chain {T} {nft_ep(i, ep)}")
        nft_ep_rules(L, i, ep)
    if STYLE == "named":            # swap only the changed map elements
        for k, (o, n) in enumerate(zip(old_eps, new_eps)):
            if o != n:
                L.append(f"delete element {T} {nft_map(i)} {{ {k} }}")
                L.append(f"add element {T} {nft_map(i)} {{ {k} : goto {nft_ep(i, n)} }}")
    else:
        L.append(f"flush chain {T} {nft_svc(i)}")
        nft_svc_rule(L, i, new_eps)
    L.extend(f"delete chain {T} {nft_ep(i, ep)}" for ep in stale)
    return L

def write(name, lines):
    with open(os.path.join(out, name), "w") as f:
        f.write("\n".join(lines) + "\n")

# Update targets: distinct non-probe services spread over the declaration order.
def targets(n, phase):
    return [1 + ((m * 2 + phase) * (S - 2)) // (2 * n) % (S - 2) for m in range(n)]

write("ipt-full.rules", ipt_full())
state = {}
def cur(i): return state.get(i, orig_eps(i))
serial = 0
for variant, with_svc, phase in (("min", False, 0), ("kp", True, 1)):
    for m, i in enumerate(targets(U, phase), 1):
        old = cur(i); new = [(ep_ip(S * E + serial), f"u{serial}")] + old[1:]; serial += 1
        write(f"ipt-upd-{variant}-{m}.rules", ipt_update(i, old, new, with_svc))
        state[i] = new
for STYLE, pfx in (("anon", "nft"), ("named", "nftn"), ("rules", "nftr")):
    write(f"{pfx}-full.nft", nft_full())
    state = {}; serial = 2 * U
    for m, i in enumerate(targets(U, 0), 1):
        old = cur(i); new = [(ep_ip(S * E + serial), f"u{serial}")] + old[1:]; serial += 1
        write(f"{pfx}-upd-{m}.nft", nft_update(i, old, new))
        state[i] = new
with open(os.path.join(out, "meta.env"), "w") as f:
    f.write(f"VIP_FIRST={vip(0)}\nVIP_LAST={vip(S - 1)}\n"
            f"IPT_RULES={S + S * E + 2 * S * E + 7}\nIPT_CHAINS={S + S * E + 3}\n"
            f"NFT_RULES={S + 2 * S * E + 8}\nNFT_CHAINS={S + S * E + 6}\nNFT_ELEMENTS={S}\n")
EOF

cat >"$WORK/server.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
while True:
    c, _ = s.accept()
    c.close()
EOF

cat >"$WORK/client.py" <<'EOF'
"""client.py LABEL HOST PORT N WARMUP -> one JSON line: TCP connect()+close() latency in us."""
import json, socket, statistics, sys, time
label, host, port, n, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
v = socket.create_connection((host, port), timeout=3); v.close()   # reachability check
lat = []
for i in range(warm + n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t0 = time.perf_counter_ns()
    s.connect((host, port))
    s.close()
    t1 = time.perf_counter_ns()
    if i >= warm:
        lat.append((t1 - t0) / 1000.0)
lat.sort()
def pct(p): return round(lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))], 1)
print(json.dumps({"label": label, "target": f"{host}:{port}", "n": n,
                  "median_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
                  "min_us": round(lat[0], 1), "max_us": round(lat[-1], 1),
                  "mean_us": round(statistics.fmean(lat), 1)}))
EOF

cat >"$WORK/summary.py" <<'EOF'
import collections, json, statistics, sys
res, counts, dpath, S, E = sys.argv[1:6]
rows = collections.OrderedDict()
for line in open(res):
    mode, metric, rep, us, usr, sys_, la = (line.split() + ["nan"])[:7]
    rows.setdefault((mode, metric), []).append((int(us) / 1000.0, float(usr), float(sys_), float(la)))
print(f"## S={S} E={E}\n")
print("| mode | metric | n | median ms | min ms | max ms | median user s | median sys s | max load1 |")
print("|---|---|---|---|---|---|---|---|---|")
for (mode, metric), v in rows.items():
    w = [x[0] for x in v]
    print(f"| {mode} | {metric} | {len(v)} | {statistics.median(w):.1f} | {min(w):.1f} | {max(w):.1f}"
          f" | {statistics.median(x[1] for x in v):.3f} | {statistics.median(x[2] for x in v):.3f}"
          f" | {max(x[3] for x in v):.2f} |")
print("\n| mode | count | value |\n|---|---|---|")
for line in open(counts):
    mode, metric, val = line.split()
    print(f"| {mode} | {metric} | {val} |")
dp = [json.loads(l) for l in open(dpath) if l.strip()]
if dp:
    print("\n| data path probe | target | n | median us | p90 us | p99 us | min us | mean us |")
    print("|---|---|---|---|---|---|---|---|")
    for d in dp:
        print(f"| {d['label']} | {d['target']} | {d['n']} | {d['median_us']} | {d['p90_us']}"
              f" | {d['p99_us']} | {d['min_us']} | {d['mean_us']} |")
EOF
}

# ---------------------------------------------------------------- measurement helpers
# timed NS MODE METRIC REP CMD... : run CMD in NS, record wall/user/sys
timed() {
  local ns=$1 mode=$2 metric=$3 rep=$4 r la; shift 4
  la=$(cut -d' ' -f1 /proc/loadavg)   # host load before the step: flags CPU contention
  r=$(ip netns exec "$ns" "$WORK/timed.sh" "$ERR" "$WORK/last.out" "$@") \
    || die "$mode/$metric rep $rep failed (see $ERR)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$metric" "$rep" "${r// /$'\t'}" "$la" >>"$RESULTS"
  log "$mode $metric #$rep: $(( ${r%% *} / 1000 )) ms (user/sys s: ${r#* }, load1 $la)"
}
count() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$COUNTS"; log "$1 $2 = $3"; }

phase_ipt() {
  local r m ns lines0 lines1 sep
  for ((r = 1; r <= FULL_REPS; r++)); do
    ns=$TAG-ipt$r; mkns "$ns"
    timed "$ns" ipt full_load "$r" iptables-restore "$WORK/ipt-full.rules"
    if ((r == FULL_REPS && QUICK)); then
      for ((m = 1; m <= UPD_REPS; m++)); do
        timed "$ns" ipt upd_min_noflush "$m" iptables-restore --noflush "$WORK/ipt-upd-min-$m.rules"
      done
      for ((m = 1; m <= UPD_REPS; m++)); do
        timed "$ns" ipt upd_kp_noflush+KUBE-SERVICES "$m" \
          iptables-restore --noflush "$WORK/ipt-upd-kp-$m.rules"
      done
    elif ((r == FULL_REPS)); then
      timed "$ns" ipt save_dump 1 iptables-save -t nat
      lines0=$(wc -l <"$WORK/last.out"); count ipt "iptables-save_-t_nat_lines" "$lines0"
      for ((m = 1; m <= UPD_REPS; m++)); do
        timed "$ns" ipt upd_min_noflush "$m" iptables-restore --noflush "$WORK/ipt-upd-min-$m.rules"
      done
      for ((m = 1; m <= UPD_REPS; m++)); do
        timed "$ns" ipt upd_kp_noflush+KUBE-SERVICES "$m" \
          iptables-restore --noflush "$WORK/ipt-upd-kp-$m.rules"
      done
      ip netns exec "$ns" iptables-save -t nat >"$WORK/last.out"
      lines1=$(wc -l <"$WORK/last.out")
      [[ $lines1 -eq $lines0 ]] || die "iptables rule count changed by updates: $lines0 -> $lines1"
      sep=$(sed -n 's/^-A \(KUBE-SEP-[A-Z0-9]*\) -s .*/\1/p' "$WORK/ipt-upd-kp-$UPD_REPS.rules")
      grep -q -- "^-A $sep -s" "$WORK/last.out" || die "iptables update not visible"
    fi
    timed "$ns" ipt teardown_flush "$r" nft flush ruleset
    delns "$ns"
  done
}

phase_nft() {  # phase_nft PREFIX  (nft = kube-proxy anon vmaps, nftn = named maps, nftr = rules)
  local p=$1 r m ns lines0 lines1 stale
  for ((r = 1; r <= FULL_REPS; r++)); do
    ns=$TAG-$p$r; mkns "$ns"
    timed "$ns" "$p" full_load "$r" nft -f "$WORK/$p-full.nft"
    if ((r == FULL_REPS && QUICK)); then
      for ((m = 1; m <= UPD_REPS; m++)); do
        timed "$ns" "$p" upd_transaction "$m" nft -f "$WORK/$p-upd-$m.nft"
      done
    elif ((r == FULL_REPS)); then
      timed "$ns" "$p" list_dump 1 nft list ruleset
      lines0=$(wc -l <"$WORK/last.out"); count "$p" "nft_list_ruleset_lines" "$lines0"
      for ((m = 1; m <= UPD_REPS; m++)); do
        timed "$ns" "$p" upd_transaction "$m" nft -f "$WORK/$p-upd-$m.nft"
      done
      ip netns exec "$ns" nft list ruleset >"$WORK/last.out"
      lines1=$(wc -l <"$WORK/last.out")
      [[ $lines1 -eq $lines0 ]] || die "nft line count changed by updates: $lines0 -> $lines1"
      stale=$(sed -n 's/^delete chain ip kube-proxy //p' "$WORK/$p-upd-$UPD_REPS.nft" | head -1)
      ! grep -qF "chain $stale {" "$WORK/last.out" || die "stale nft chain still present"
    fi
    timed "$ns" "$p" teardown_flush "$r" nft flush ruleset
    delns "$ns"
  done
}

probe() {  # probe LABEL HOST PORT
  local j
  ip netns exec "$TAG-rtr" conntrack -F >/dev/null 2>&1 || true
  j=$(ip netns exec "$TAG-cli" python3 "$WORK/client.py" "$1" "$2" "$3" "$CONNECTS" "$WARMUP") \
    || die "probe $1 ($2:$3) failed"
  echo "$j" >>"$DPATH"; log "dp $j"
}

phase_dp() {
  local c=$TAG-cli r=$TAG-rtr s=$TAG-srv i
  mkns "$c"; mkns "$r"; mkns "$s"
  # veth pairs are created inside the router netns, peers moved straight to cli/srv netns
  ip -n "$r" link add rtr-cli type veth peer name eth0 netns "$c"
  ip -n "$r" link add rtr-srv type veth peer name eth0 netns "$s"
  ip -n "$c" addr add "$CLI_IP/24" dev eth0;      ip -n "$c" link set eth0 up
  ip -n "$r" addr add "$RTR_CLI_IP/24" dev rtr-cli; ip -n "$r" link set rtr-cli up
  ip -n "$r" addr add "$RTR_SRV_IP/24" dev rtr-srv; ip -n "$r" link set rtr-srv up
  ip -n "$s" addr add "$SERVER_IP/24" dev eth0;   ip -n "$s" link set eth0 up
  ip -n "$c" route add default via "$RTR_CLI_IP"
  ip -n "$s" route add default via "$RTR_SRV_IP"
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$c" sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
  ip netns exec "$s" python3 "$WORK/server.py" "$SERVER_IP" "$SERVER_PORT" 2>>"$ERR" &
  SRV_PID=$!
  for i in {1..50}; do
    ip netns exec "$c" python3 -c "import socket;socket.create_connection(('$SERVER_IP',$SERVER_PORT),1).close()" \
      2>/dev/null && break
    sleep 0.1
  done

  probe "baseline: no rules, direct" "$SERVER_IP" "$SERVER_PORT"
  ip netns exec "$r" nft -f - <<'EOF'
add table ip svb-ct
add chain ip svb-ct pre { type nat hook prerouting priority dstnat ; }
EOF
  probe "baseline: empty nat hook (conntrack+nat on), direct" "$SERVER_IP" "$SERVER_PORT"
  ip netns exec "$r" nft flush ruleset

  timed "$r" dp ipt_load_in_router 1 iptables-restore "$WORK/ipt-full.rules"
  probe "iptables S=$S: first VIP" "$VIP_FIRST" 80
  probe "iptables S=$S: last VIP" "$VIP_LAST" 80
  probe "iptables S=$S: non-VIP (direct to server, full KUBE-SERVICES miss)" "$SERVER_IP" "$SERVER_PORT"
  ip netns exec "$r" nft flush ruleset

  timed "$r" dp nft_load_in_router 1 nft -f "$WORK/$DP_NFT-full.nft"
  local lay=""; [[ $DP_NFT == nft ]] || lay=" ($DP_NFT layout)"
  probe "nftables$lay S=$S: first VIP" "$VIP_FIRST" 80
  probe "nftables$lay S=$S: last VIP" "$VIP_LAST" 80
  probe "nftables$lay S=$S: non-VIP (direct to server, map miss)" "$SERVER_IP" "$SERVER_PORT"
  ip netns exec "$r" nft flush ruleset

  kill "$SRV_PID"; wait "$SRV_PID" 2>/dev/null || true; SRV_PID=""
  delns "$c"; delns "$r"; delns "$s"
}

# ---------------------------------------------------------------- main
write_helpers
log "generating rules: S=$S E=$E (work dir $WORK)"
python3 "$WORK/gen.py" "$S" "$E" "$WORK" "$SERVER_IP" "$UPD_REPS"
# shellcheck disable=SC1091
source "$WORK/meta.env"
count gen expected_iptables_rules "$IPT_RULES"; count gen expected_iptables_chains "$IPT_CHAINS"
count gen expected_nft_rules "$NFT_RULES"; count gen expected_nft_chains "$NFT_CHAINS"
count gen ipt_full_file_bytes "$(stat -c %s "$WORK/ipt-full.rules")"
for f in nft nftn nftr; do count gen "${f}_full_file_bytes" "$(stat -c %s "$WORK/$f-full.nft")"; done
count gen ipt_upd_min_file_lines "$(wc -l <"$WORK/ipt-upd-min-1.rules")"
count gen ipt_upd_kp_file_lines "$(wc -l <"$WORK/ipt-upd-kp-1.rules")"
count gen nft_upd_file_lines "$(wc -l <"$WORK/nft-upd-1.nft")"
cp "$WORK/ipt-upd-min-1.rules" "$WORK/nft-upd-1.nft" "$OUT/"    # samples for the record
head -c 4000 "$WORK/ipt-full.rules" >"$OUT/ipt-full.head.rules"
head -c 4000 "$WORK/nft-full.nft" >"$OUT/nft-full.head.nft"

IFS=, read -ra PH <<<"$PHASES"
for p in "${PH[@]}"; do
  case $p in
    ipt) phase_ipt ;; nft|nftn|nftr) phase_nft "$p" ;; dp) phase_dp ;;
    *) die "unknown phase $p" ;;
  esac
done

{
  echo "# svc-bench $(date -Is) kernel $(uname -r) $(iptables --version) $(nft --version)"
  python3 "$WORK/summary.py" "$RESULTS" "$COUNTS" "$DPATH" "$S" "$E"
} | tee "$OUT/summary.md"
