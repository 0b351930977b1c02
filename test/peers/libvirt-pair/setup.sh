#!/usr/bin/env bash
# Two REAL libvirt "hypervisor hosts" on one machine, on loopback, for tests of
# live migration (virsh migrate --live --persistent --undefinesource,
# domjobinfo, domjobabort, list, dumpxml, nodedev-*) over SSH, without KVM,
# without systemd.  QEMU runs under TCG.
#
#   host A: its own libvirtd + its own sshd on 127.0.77.1:42622
#   host B: its own libvirtd + its own sshd on 127.0.77.2:42622
#   distinct host_uuid per daemon, so libvirt accepts A <-> B migration;
#   a 64 MiB disk-less guest (tiny Multiboot kernel) defined + running on A.
#
# Two modes (LVPAIR_MODE):
#   system  (default when `unshare --mount` works): each host is a root
#           libvirtd in qemu:///system, in its own mount namespace (own
#           /run/libvirt, /var/lib/libvirt, /etc/libvirt, /root); ssh as root;
#           URIs qemu+ssh://root@127.0.77.2:42622/system -- like production.
#   session (fallback, needs no namespaces): host A = unix user lva, host B =
#           unix user lvb, each with its own libvirtd session daemon;
#           URIs qemu+ssh://lvb@127.0.77.2:42622/session.
#
# Idempotent: running it again keeps what runs and brings the guest back to
# "defined + running on A, absent on B".  Needs root.  Undo with teardown.sh.
# Tunables: LVPAIR_MODE (auto|system|session), LVPAIR_BASE (/tmp/lvpair),
# LVPAIR_SSH_PORT (42622), LVPAIR_ADDR_A/B (127.0.77.1/2), LVPAIR_MEM_MIB (64),
# LVPAIR_FILL_MIB (48), LVPAIR_DOMAIN (lvguest).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE=${LVPAIR_BASE:-/tmp/lvpair}
PORT=${LVPAIR_SSH_PORT:-42622}
ADDR_a=${LVPAIR_ADDR_A:-127.0.77.1}
ADDR_b=${LVPAIR_ADDR_B:-127.0.77.2}
MEM_MIB=${LVPAIR_MEM_MIB:-64}
FILL_MIB=${LVPAIR_FILL_MIB:-48}
DOM=${LVPAIR_DOMAIN:-lvguest}
MODE=${LVPAIR_MODE:-auto}

die() { echo "setup.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ $((FILL_MIB + 10)) -le "$MEM_MIB" ] || die "LVPAIR_FILL_MIB must be <= LVPAIR_MEM_MIB - 10"

T0=$(date +%s.%N); TP=$T0; PHASE=
phase() { # phase NAME: print how long the previous phase took
  local now; now=$(date +%s.%N)
  [ -z "$PHASE" ] || awk -v p="$PHASE" -v a="$now" -v b="$TP" 'BEGIN { printf "[lvpair] %-14s %6.2f s\n", p, a - b }'
  PHASE=$1; TP=$now
}
alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }
wait_for() { # wait_for SECONDS CMD...
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || return 1; sleep 0.2; done
}
subst() { # subst TEMPLATE OUT KEY=VALUE...
  local tpl=$1 out=$2 kv; shift 2; local args=()
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$tpl" > "$out"
}
record() { grep -qxF "$2" "$BASE/created-$1" 2>/dev/null || echo "$2" >> "$BASE/created-$1"; }

# ---------------------------------------------------------------- install
phase install
pkgs=()
for p in qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients openssh-server openssh-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "[lvpair] installing: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
  }
fi

# ---------------------------------------------------------------- mode
phase mode
mkdir -p "$BASE"; chmod 755 "$BASE"
if [ "$MODE" = auto ]; then
  if [ -f "$BASE/mode" ]; then MODE=$(cat "$BASE/mode")
  elif unshare --mount --propagation private true 2>/dev/null; then MODE=system
  else MODE=session; fi
fi
case "$MODE" in system|session) ;; *) die "LVPAIR_MODE must be auto, system or session";; esac
if [ -f "$BASE/mode" ] && [ "$(cat "$BASE/mode")" != "$MODE" ]; then
  die "$BASE holds a $(cat "$BASE/mode")-mode pair; run teardown.sh first"
fi
echo "$MODE" > "$BASE/mode"
echo "[lvpair] mode: $MODE"

# per-host facts
for x in a b; do
  if [ "$MODE" = system ]; then
    declare "USER_$x=root" "HOME_$x=$BASE/$x/root" "SOCK_$x=$BASE/$x/run/libvirt-sock"
    declare "PIDF_$x=$BASE/$x/run/libvirtd.pid" "LOG_$x=$BASE/$x/log/libvirtd.log"
  else
    declare "USER_$x=lv$x" "HOME_$x=$BASE/$x/home"
    declare "SOCK_$x=$BASE/$x/home/.cache/libvirt/libvirt-sock"
    declare "PIDF_$x=$BASE/$x/home/.cache/libvirt/libvirtd.pid" "LOG_$x=$BASE/$x/home/libvirtd.log"
  fi
done
v() { local n="$1_$2"; echo "${!n}"; }              # v ADDR a
local_uri() { echo "qemu+unix:///$MODE?socket=$(v SOCK "$1")"; }
vsh() { local x=$1; shift; virsh -q -c "$(local_uri "$x")" "$@"; }   # as root, straight to that host's daemon
as_user() { local u=$1 h=$2; shift 2; runuser -u "$u" -- env -i HOME="$h" USER="$u" LOGNAME="$u" PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# ---------------------------------------------------------------- users + config
phase users+config
if [ "$MODE" = system ]; then
  # libvirt's privileged qemu driver refuses to start without its user
  # ("Failed to parse user 'libvirt-qemu'"), even with user = "root" in qemu.conf
  if ! getent passwd libvirt-qemu >/dev/null; then
    useradd -r -U -M -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu; record users libvirt-qemu
  fi
  for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
    [ -d "$d" ] || { mkdir -p "$d"; record mountpoints "$d"; }   # empty mount points only
  done
fi
i=0
for x in a b; do
  i=$((i + 1)); u=$(v USER $x); h=$(v HOME $x); mig=$((49340 + 10 * i))
  mkdir -p "$BASE/$x"
  if [ "$MODE" = system ]; then
    mkdir -p "$BASE/$x"/{run,lib,log,cache,etc} "$h/.ssh"
    chmod 700 "$h"
    cp /etc/libvirt/libvirt.conf /etc/libvirt/libvirt-admin.conf "$BASE/$x/etc/" 2>/dev/null || true
    cfg=$BASE/$x/etc; qtpl=qemu-system.conf.in
  else
    if ! id "$u" >/dev/null 2>&1; then useradd -M -U -d "$h" -s /bin/bash "$u"; record users "$u"; fi
    [ "$(getent passwd "$u" | cut -d: -f6)" = "$h" ] || usermod -d "$h" "$u"
    usermod -p '*' "$u"      # '!' (locked) makes sshd without PAM refuse even key logins
    mkdir -p "$h/.config/libvirt" "$h/.ssh"
    cfg=$h/.config/libvirt; qtpl=qemu-session.conf.in
  fi
  subst "$HERE/libvirtd.conf.in" "$cfg/libvirtd.conf" HOST_UUID="6c7a0001-0000-4000-8000-00000000000$x" LOG="$(v LOG $x)"
  subst "$HERE/$qtpl" "$cfg/qemu.conf" ADDR="$(v ADDR $x)" MIG_PORT_MIN=$mig MIG_PORT_MAX=$((mig + 9))
  [ -f "$h/.ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "$u@lvpair-$x" -f "$h/.ssh/id_ed25519"
  [ -f "$BASE/$x/ssh_host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "lvpair-host-$x" -f "$BASE/$x/ssh_host_ed25519"
  if [ "$MODE" = system ]; then permit=prohibit-password; else permit=no; fi
  subst "$HERE/sshd_config.in" "$BASE/$x/sshd_config" ADDR="$(v ADDR $x)" PORT="$PORT" DIR="$BASE/$x" USER="$u" PERMIT_ROOT=$permit
done

# ---------------------------------------------------------------- keys
phase keys
[ -f "$BASE/id_bot" ] || ssh-keygen -q -t ed25519 -N '' -C lvpair-bot -f "$BASE/id_bot"
: > "$BASE/known_hosts"
for x in a b; do
  printf '[%s]:%s %s\n' "$(v ADDR $x)" "$PORT" "$(cut -d' ' -f1,2 "$BASE/$x/ssh_host_ed25519.pub")" >> "$BASE/known_hosts"
done
for x in a b; do
  h=$(v HOME $x)
  cat "$BASE/id_bot.pub" "$HOME_a/.ssh/id_ed25519.pub" "$HOME_b/.ssh/id_ed25519.pub" > "$h/.ssh/authorized_keys"
  cp "$BASE/known_hosts" "$h/.ssh/known_hosts"
  # lets a desturi name the other host without user/port: qemu+ssh://lvB/$MODE
  printf 'Host lvA\n  HostName %s\n  User %s\nHost lvB\n  HostName %s\n  User %s\nHost lvA lvB\n  Port %s\n  BatchMode yes\n' \
    "$ADDR_a" "$USER_a" "$ADDR_b" "$USER_b" "$PORT" > "$h/.ssh/config"
  chmod 700 "$h/.ssh"; chmod 600 "$h/.ssh/authorized_keys" "$h/.ssh/id_ed25519" "$h/.ssh/config"
  [ "$MODE" = system ] || chown -R "$(v USER $x):$(v USER $x)" "$h"
done
cat > "$BASE/ssh_config" <<EOF
Host lvA
  HostName $ADDR_a
  User $USER_a
Host lvB
  HostName $ADDR_b
  User $USER_b
Host lvA lvB
  Port $PORT
  IdentityFile $BASE/id_bot
  IdentitiesOnly yes
  UserKnownHostsFile $BASE/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
EOF

# ---------------------------------------------------------------- daemons (libvirtd + sshd per host)
phase daemons
mkdir -p /run/sshd && chmod 755 /run/sshd
for x in a b; do
  /usr/sbin/sshd -t -f "$BASE/$x/sshd_config"
  if [ "$MODE" = system ]; then
    if ! alive "$(v PIDF $x)"; then
      alive "$BASE/$x/sshd.pid" && kill "$(cat "$BASE/$x/sshd.pid")" && sleep 0.5
      unshare --mount --propagation private "$HERE/ns-start.sh" "$BASE/$x"
    elif ! alive "$BASE/$x/sshd.pid"; then
      nsenter -t "$(cat "$(v PIDF $x)")" -m /usr/sbin/sshd -f "$BASE/$x/sshd_config" -E "$BASE/$x/sshd.log"
    fi
  else
    alive "$(v PIDF $x)" || as_user "$(v USER $x)" "$(v HOME $x)" libvirtd --daemon
    alive "$BASE/$x/sshd.pid" || /usr/sbin/sshd -f "$BASE/$x/sshd_config" -E "$BASE/$x/sshd.log"
  fi
done
for x in a b; do
  wait_for 60 test -S "$(v SOCK $x)" && wait_for 60 vsh $x list --all \
    || die "libvirtd of host $x not answering; see $(v LOG $x)"
  wait_for 20 ssh -F "$BASE/ssh_config" "lv${x^^}" true || die "sshd of host $x not answering; see $BASE/$x/sshd.log"
done

# ---------------------------------------------------------------- guest
phase guest
G=$BASE/guest; mkdir -p "$G"; chmod 755 "$G"
bash "$HERE/mkkernel.sh" "$G/fill.bin" "$FILL_MIB" 0
bash "$HERE/mkkernel.sh" "$G/dirty.bin" "$FILL_MIB" 1
# Ferry's metadata marks lvguest highly available (it has no disks on shared storage, which is
# what would make it HA otherwise); lvdirty carries none, so Ferry sees it as non-HA.
subst "$HERE/guest.xml.in" "$G/$DOM.xml" NAME="$DOM" UUID=6c7a0002-0000-4000-8000-000000000001 \
  MEM_MIB="$MEM_MIB" KERNEL="$G/fill.bin" META='<ferry:vm xmlns:ferry="https://ferry.dev/xmlns/1" ha="true"/>'
subst "$HERE/guest.xml.in" "$G/lvdirty.xml" NAME=lvdirty UUID=6c7a0002-0000-4000-8000-000000000002 \
  MEM_MIB="$MEM_MIB" KERNEL="$G/dirty.bin" META=""
cp "$HERE/vhba.xml" "$G/"
chmod 644 "$G"/*
for x in b a; do            # back to a known state: nothing on B, only $DOM on A
  for d in $(vsh $x list --all --name); do
    [ "$x$d" = "a$DOM" ] && continue
    vsh $x destroy "$d" >/dev/null 2>&1 || true
    vsh $x undefine "$d" >/dev/null 2>&1 || true
  done
done
vsh a domjobabort "$DOM" >/dev/null 2>&1 || true
vsh a dominfo "$DOM" >/dev/null 2>&1 || vsh a define "$G/$DOM.xml" >/dev/null
[ "$(vsh a domstate "$DOM")" = running ] || vsh a start "$DOM" >/dev/null
wait_for 30 sh -c "[ \"\$(virsh -q -c '$(local_uri a)' domstate '$DOM')\" = running ]" || die "guest did not start"

phase done
cat > "$BASE/env" <<EOF
# source me: connection facts of the libvirt pair ($MODE mode)
export LVPAIR_MODE=$MODE
export LVPAIR_SSH_CONFIG=$BASE/ssh_config     # ssh -F \$LVPAIR_SSH_CONFIG lvA 'virsh list --all'
export LVPAIR_SSH_KEY=$BASE/id_bot
export LVPAIR_KNOWN_HOSTS=$BASE/known_hosts
export LVPAIR_SSH_PORT=$PORT
export LVPAIR_HOST_A=$ADDR_a LVPAIR_USER_A=$USER_a
export LVPAIR_HOST_B=$ADDR_b LVPAIR_USER_B=$USER_b
export LVPAIR_URI_A='qemu+ssh://$USER_a@$ADDR_a:$PORT/$MODE'
export LVPAIR_URI_B='qemu+ssh://$USER_b@$ADDR_b:$PORT/$MODE'
export LVPAIR_LOCAL_URI_A='$(local_uri a)'
export LVPAIR_LOCAL_URI_B='$(local_uri b)'
export LVPAIR_DOMAIN=$DOM
export LVPAIR_DIRTY_XML=$G/lvdirty.xml
export LVPAIR_VHBA_XML=$G/vhba.xml
EOF
awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "[lvpair] total          %6.2f s\n", a - b }'
cat <<EOF

libvirt pair ready, $MODE mode (facts in $BASE/env):
  host A: ssh -i $BASE/id_bot -o UserKnownHostsFile=$BASE/known_hosts -p $PORT $USER_a@$ADDR_a   (plain 'virsh' there = qemu:///$MODE)
  host B: ssh -i $BASE/id_bot -o UserKnownHostsFile=$BASE/known_hosts -p $PORT $USER_b@$ADDR_b
  short:  ssh -F $BASE/ssh_config lvA 'virsh list --all'
  migration target URIs (the <desturi> of 'virsh migrate' run on the source host):
    A -> B: qemu+ssh://$USER_b@$ADDR_b:$PORT/$MODE
    B -> A: qemu+ssh://$USER_a@$ADDR_a:$PORT/$MODE
  as root here, no ssh:
    virsh -c '$(local_uri a)' list --all
    virsh -c '$(local_uri b)' list --all
  guest '$DOM' ($MEM_MIB MiB, $FILL_MIB MiB of it non-zero) runs on A; $G/lvdirty.xml keeps
  dirtying memory (with --bandwidth 1 its migration never converges).
  e.g. ssh -F $BASE/ssh_config lvA 'virsh migrate --live --persistent --undefinesource $DOM qemu+ssh://$USER_b@$ADDR_b:$PORT/$MODE'
  inside a host, ~/.ssh/config also names the other one: qemu+ssh://lvB/$MODE and qemu+ssh://lvA/$MODE
EOF
