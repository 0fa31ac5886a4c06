#!/usr/bin/env bash
# run-in-vm.sh -- run one command inside a throw-away user-mode-linux guest kernel that has IPVS.
#
# Usage:
#   scripts/uml/run-in-vm.sh 'shell command string'    # one argument: run with bash -c
#   scripts/uml/run-in-vm.sh prog arg1 arg2 ...        # several arguments: exec-style, each kept verbatim
#   e.g. scripts/uml/run-in-vm.sh node dist/vm-tests/ipvs-kernel.test.js
#
# Adapted from the measured recipe run-in-ipvs-vm.sh the podnet team shares (Debian's
# user-mode-linux 6.1: a kernel built as an ordinary host program, its modules -- ip_vs, veth,
# nf_conntrack... -- in /usr/lib/uml/modules; no /dev/kvm, no disk image, no root network
# changes). A busybox initramfs mounts the HOST's / read-only (hostfs) under a tmpfs overlay and
# switch_roots into it, so every host binary (node, ipvsadm, ip, this checkout, node_modules)
# is at the same path inside; writes go to the overlay and vanish at power-off. What podnet adds:
#   - xstate-shim.c, preloaded into the UML binary: UML 6.1 cannot start on hosts with a large
#     XSAVE area (AVX-512 / AMX: "ptrace set fp regs failed, errno = 14", init killed);
#   - the kernel modules podnet's IPVS mode needs are loaded before the command (IPVS has no
#     module autoload through generic netlink); PODNET_VM_MODULES adds more. br_netfilter too,
#     as on the host (bridge-nf-call-iptables=1): without it a pod's reply to a pod on the same
#     bridge bypasses the node's conntrack / IPVS and a DNATed connection breaks;
#   - in the guest, `iptables` is iptables-legacy: this kernel has no nf_tables for ip/ip6/inet, so
#     nft-based rules (`nft`, iptables-nft) cannot run there -- only x_tables + ipset;
#   - no package installation here: scripts/setup.sh installs what this needs (it fails clearly);
#   - PODNET_VM_* knobs, and the guest's command runs with the host's environment and cwd.
#
# The command runs as (guest) root in the host's current directory with the host's environment,
# in a fresh kernel (own IPVS tables, conntrack, netns); the guest has no network device
# (loopback only). Its stdout+stderr (merged) stream to this script's stdout; the script exits
# with the command's status (124 = timeout, 125 = VM or setup failure). stdin is /dev/null.
# Every temporary file is removed on exit; the guest is killed if this script is interrupted.
#
# Debian packages used: user-mode-linux busybox-static kmod iproute2 (+ a C compiler for the shim;
# ipvsadm, ipset, iptables, socat for the tests) -- all in scripts/setup.sh's list.
#
# Environment knobs:
#   PODNET_VM_MEM       guest RAM in MiB (default 1536; the writable overlay is tmpfs inside it)
#   PODNET_VM_TIMEOUT   seconds before the guest is killed -> exit 124 (default 900)
#   PODNET_VM_RW_DIRS   space-separated host dirs shared READ-WRITE at the same path (results)
#   PODNET_VM_MODULES   extra kernel modules to load before the command
#   PODNET_VM_VERBOSE=1 print the guest kernel's console log to stderr afterwards
#   PODNET_VM_KARGS     extra guest kernel command-line arguments
set -euo pipefail

me=run-in-vm
die() { echo "$me: $*" >&2; exit 125; }

[ $# -ge 1 ] || die "usage: $0 'command string'  |  $0 prog [args...]"
if [ $# -eq 1 ]; then CMD=$1; else CMD=$(printf '%q ' "$@"); fi
MEM=${PODNET_VM_MEM:-1536}
TIMEOUT=${PODNET_VM_TIMEOUT:-900}
UML=/usr/bin/linux.uml
UMODS=/usr/lib/uml/modules
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODULES="ip_vs ip_vs_rr ip_vs_sh nf_conntrack nf_nat veth bridge br_netfilter dummy
  ip_tables iptable_nat iptable_filter ip6_tables ip6table_nat ip6table_filter
  ip_set ip_set_hash_ip ip_set_hash_ipport ip_set_hash_ipportip xt_set
  xt_MASQUERADE xt_mark xt_conntrack xt_comment xt_addrtype ipt_REJECT ip6t_REJECT ${PODNET_VM_MODULES:-}"

# ---- 1. what the host must have (scripts/setup.sh installs it)
missing=()
[ -x "$UML" ] && [ -d "$UMODS" ] || missing+=(user-mode-linux)
[ -x /bin/busybox ] && dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing+=(busybox-static)
command -v modprobe >/dev/null || [ -x /sbin/modprobe ] || missing+=(kmod)
command -v ip >/dev/null || [ -x /sbin/ip ] || missing+=(iproute2)
[ ${#missing[@]} -eq 0 ] || die "missing Debian packages: ${missing[*]} (run scripts/setup.sh as root, or apt-get install ${missing[*]})"
CC=
for c in cc gcc; do command -v "$c" >/dev/null && { CC=$c; break; }; done
KVER=$(ls -1 "$UMODS" | sort -V | tail -n1)
OVL=$UMODS/$KVER/kernel/fs/overlayfs/overlay.ko
[ -f "$OVL" ] || die "no overlay.ko in $UMODS/$KVER"
for d in ${PODNET_VM_RW_DIRS:-}; do [ -d "$d" ] || die "PODNET_VM_RW_DIRS: $d is not a directory"; done

# ---- 2. per-run dir: initramfs, guest init script, env + command, the shim
RUN=$(mktemp -d "${TMPDIR:-/tmp}/podnet-vm.XXXXXX")
VPID=
cleanup() { if [ -n "$VPID" ]; then kill "$VPID" 2>/dev/null || true; wait "$VPID" 2>/dev/null || true; fi; rm -rf "$RUN"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

PRELOAD=
if [ -n "$CC" ]; then
  "$CC" -O2 -shared -fPIC -o "$RUN/xstate-shim.so" "$HERE/xstate-shim.c" -ldl 2>"$RUN/cc.log" ||
    die "compiling $HERE/xstate-shim.c failed: $(head -n 5 "$RUN/cc.log")"
  PRELOAD=$RUN/xstate-shim.so
else
  echo "$me: warning: no C compiler (cc/gcc): starting UML without xstate-shim (fails on AVX-512/AMX hosts)" >&2
fi

I=$RUN/initramfs
mkdir -p "$I/bin" "$I/proc" "$I/sys" "$I/dev" "$I/lower" "$I/rw" "$I/newroot" "$RUN/uml"
cp /bin/busybox "$I/bin/busybox"
cp "$OVL" "$I/overlay.ko"
{ echo '#!/bin/busybox sh'; printf 'RUN=%q\n' "$RUN"; cat <<'EOF'
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "podnet-vm initramfs: $*"; echo o > /proc/sysrq-trigger; sleep 30; }
mount -t devtmpfs devtmpfs /dev; mount -t proc proc /proc; mount -t sysfs sysfs /sys
insmod /overlay.ko || fail "insmod overlay"
mount -t hostfs -o ro none /lower || fail "mount host / (hostfs)"
mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "mount overlay"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
mkdir -p /newroot/run/podnet-vm
mount -t hostfs -o "$RUN" none /newroot/run/podnet-vm || fail "mount run dir"
mount --move /dev /newroot/dev; mount --move /proc /newroot/proc; mount --move /sys /newroot/sys
exec switch_root /newroot /bin/bash /run/podnet-vm/guest.sh
fail "switch_root"
EOF
} > "$I/init"
chmod 755 "$I/init"
(cd "$I" && find . | /bin/busybox cpio -o -H newc 2>/dev/null) > "$RUN/initrd.img"

cat > "$RUN/guest.sh" <<'EOF'
#!/bin/bash
# PID 1 of the guest, after switch_root. Root fs = host / (read-only hostfs) + tmpfs overlay.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
R=/run/podnet-vm; OUT=/dev/ttyS0
. $R/config
off() { echo "$1" > $R/rc; sync; echo o > /proc/sysrq-trigger; sleep 30; }
mkdir -p /dev/pts /dev/shm /lib/modules /run/netns /tmp
mount -t devpts -o ptmxmode=0666,mode=0620 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount --bind /usr/lib/uml/modules /lib/modules || { echo "podnet-vm: bind modules failed" > $OUT; off 125; }
for d in $RW_DIRS; do mkdir -p "$d" && mount -t hostfs -o "$d" none "$d" || { echo "podnet-vm: mount rw dir $d failed" > $OUT; off 125; }; done
hostname podnet-vm
ip link set lo up
# This kernel has no nf_tables for ip/ip6/inet (CONFIG_NF_TABLES_IPV4/IPV6/INET are off): in the guest
# `iptables` means the legacy (x_tables) backend. /etc is the tmpfs overlay: the host keeps its choice.
for t in iptables ip6tables; do
  for s in "" -save -restore; do [ -e /usr/sbin/$t-legacy$s ] && ln -sf /usr/sbin/$t-legacy$s /etc/alternatives/$t$s; done
done
stty -F $OUT raw -echo 2>/dev/null
bad=
modprobe -a $MODULES 2>/dev/null || for m in $MODULES; do modprobe "$m" 2>/dev/null || bad="$bad $m"; done
[ -z "$bad" ] || echo "podnet-vm: warning: could not load kernel modules:$bad" > $OUT
# The command writes into a fifo drained by cat, so it sees a pipe (as in CI), not a tty (no colours).
mkfifo /run/podnet-vm-out
cat /run/podnet-vm-out > $OUT & CAT=$!
( set +e; . $R/env; cd "$CWD" 2>/dev/null || cd /; exec /bin/bash -c "$CMD" ) < /dev/null > /run/podnet-vm-out 2>&1 & CMDPID=$!
wait $CMDPID; rc=$?
# Processes the command left behind (daemons) would hold the fifo open; the VM is going down anyway, so
# SIGKILL everything except PID 1 and cat, then let cat drain the fifo to EOF (nothing is lost).
for _ in 1 2; do
  for p in /proc/[0-9]*; do p=${p#/proc/}; [ "$p" = 1 ] || [ "$p" = "$CAT" ] || kill -9 "$p" 2>/dev/null; done
done
wait $CAT 2>/dev/null
off $rc
EOF

for v in $(compgen -e); do
  case $v in PWD|OLDPWD|SHLVL|_|TERMCAP|LD_PRELOAD) continue ;; esac
  printf 'export %s=%q\n' "$v" "${!v}"
done > "$RUN/env"
{
  printf 'CMD=%q\n' "$CMD"
  printf 'CWD=%q\n' "$PWD"
  printf 'RW_DIRS=%q\n' "${PODNET_VM_RW_DIRS:-}"
  printf 'MODULES=%q\n' "$(echo $MODULES)"
} > "$RUN/config"

# ---- 3. boot. con0 (kernel console) -> console.log; ssl0 (guest /dev/ttyS0) -> our stdout (fd 4)
set +e
timeout -k 5 "$TIMEOUT" env ${PRELOAD:+LD_PRELOAD="$PRELOAD"} "$UML" mem="${MEM}M" initrd="$RUN/initrd.img" umid="podnet-vm-$$" uml_dir="$RUN/uml" \
  con=null con0=null,fd:3 ssl=null ssl0=null,fd:4 loglevel=4 ${PODNET_VM_KARGS:-} \
  4>&1 3>"$RUN/console.log" >"$RUN/uml.log" 2>&1 </dev/null &
VPID=$!
wait "$VPID"; vrc=$?
VPID=
set -e
if [ "${PODNET_VM_VERBOSE:-0}" = 1 ]; then { echo "---- guest console ----"; cat "$RUN/console.log"; } >&2; fi
if [ -s "$RUN/rc" ]; then exit "$(cat "$RUN/rc")"; fi
if [ "$vrc" = 124 ] || [ "$vrc" = 137 ]; then echo "$me: timed out after ${TIMEOUT}s" >&2; exit 124; fi
set +e
{ echo "$me: guest failed (exit $vrc) without reporting a status"; echo "---- uml ----"; tail -n 20 "$RUN/uml.log"
  echo "---- guest console (tail) ----"; grep -v '^ \[<' "$RUN/console.log" | tail -n 40; } >&2
exit 125
