#!/usr/bin/env bash
# podnet setup, idempotent: OS packages (apt-get), npm packages (npm ci), the native addon
# and pause program (node-gyp, from source), the TypeScript build, and the `podnet`
# command on PATH. Safe to run again at any time; it only does what is missing.
# Run as root on Debian 12 / Ubuntu 22.04+.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# ---- 1. OS packages used at run and test time
PKGS=(
  iproute2 iptables nftables ipset conntrack kmod procps util-linux   # data plane
  iperf3 tcpdump socat iputils-ping curl                               # tests and benchmarks
  podman containernetworking-plugins containerd runc conmon uidmap     # real runtimes calling podnet-cni (tests; the reference CNI plugins for the pods benchmark)
  user-mode-linux busybox-static ipvsadm gcc                           # IPVS tests in a UML guest (gcc: scripts/uml/xstate-shim.c)
  etcd-server etcd-client                                              # podnet api on etcd (tests start their own)
  python3 make g++ ca-certificates openssl                             # node-gyp, test certificates
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}); run this script as root"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
    die "apt-get install ${missing[*]} failed"
  # Debian starts an etcd service on install; podnet's tests start their own inside
  # namespaces, so a daemon we just installed is stopped and disabled again.
  # Likewise containerd: the runtime tests start their own, with a private config.
  if command -v systemctl >/dev/null && systemctl is-system-running >/dev/null 2>&1; then
    printf '%s\n' "${missing[@]}" | grep -qx etcd-server && { systemctl disable --now etcd >/dev/null 2>&1 || true; }
    printf '%s\n' "${missing[@]}" | grep -qx containerd && { systemctl disable --now containerd >/dev/null 2>&1 || true; }
  fi
fi
command -v kubectl >/dev/null || say "note: kubectl is not installed; the kubectl tests will be skipped (podnet does not need it)"

# ---- 2. Node.js >= 20 (the test runners need it; Debian 12's own nodejs is 18)
command -v node >/dev/null || die "Node.js 20 or newer is required (https://nodejs.org or NodeSource packages)"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || die "Node.js $(node -v) is too old: podnet needs 20 or newer"

# ---- 3. npm packages, exactly as locked (skipped when node_modules matches the lockfile)
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.podnet-lock 2>/dev/null || true)" != "$lock_hash" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_hash" > node_modules/.podnet-lock
fi

# ---- 4. native addon + pause program (rebuilt when their sources change)
native_hash=$( (cat native/binding.gyp native/src/*; node -v) | sha256sum | cut -d' ' -f1)
if [ "$(cat native/build/.podnet-src 2>/dev/null || true)" != "$native_hash" ] ||
   [ ! -f native/build/Release/podnet_native.node ] || [ ! -x native/build/Release/pause ] || [ ! -x native/build/Release/podnet-probe ]; then
  say "building native/ with node-gyp"
  node scripts/build-native.mjs >/dev/null
  echo "$native_hash" > native/build/.podnet-src
fi

# ---- 5. TypeScript
say "compiling TypeScript"
npx --no-install tsc -p tsconfig.json
chmod +x dist/src/cli/main.js

# ---- 6. the podnet command on PATH and the CNI plugin where runtimes look (root only)
if [ "$(id -u)" = 0 ]; then
  ln -sfn "$ROOT/dist/src/cli/main.js" /usr/local/bin/podnet
  install -D -m 0755 native/build/Release/podnet-cni /opt/cni/bin/podnet-cni
fi
say "ready: $(node dist/src/cli/main.js --version) ($ROOT)"
