#!/usr/bin/env bash
# Installs the agent in a Debian 12 virtual machine with systemd as PID 1
# and checks what the temporary-root tests cannot: the hardened unit starts,
# the agent extracts and uploads under its whole sandbox, the doctor passes
# the service item, a second install changes nothing, uninstall leaves
# nothing. Against `cargo xtask demo --keep` on this machine (the VM reaches
# it at 10.0.2.2 through qemu's user network).
#
#   sudo installer/linux/vm-check.sh          # about 6 minutes; not in CI
#
# Needs root (debootstrap, a loop mount) and Debian's debootstrap and
# qemu-system-x86 (installed when missing). The Debian root with its kernel
# is made once, in /var/cache/transmissor/vm. Under TCG (no KVM needed).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
cache=/var/cache/transmissor/vm
work=$(mktemp -d /var/tmp/transmissor-vm.XXXXXX)
demo_pid=
db_port=
cleanup() {
    umount "$work/mnt" 2>/dev/null || true
    [ -n "$demo_pid" ] || return 0
    # Ctrl-C, as the demo asks, then whatever of its servers is left.
    kill -INT -- -"$demo_pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 1; done
    kill -- -"$demo_pid" 2>/dev/null || true
    analytic_port=$(sed -n 's/.*psql -h 127.0.0.1 -p \([0-9]*\).*/\1/p' "$work/demo.log" | head -1)
    for port in $db_port $analytic_port; do pkill -f "postgres -D .* -p $port " || true; done
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"; }; }
need debootstrap debootstrap
need qemu-system-x86_64 qemu-system-x86

if [ ! -e "$cache/rootfs/boot/vmlinuz" ] && ! ls "$cache"/rootfs/boot/vmlinuz-* >/dev/null 2>&1; then
    echo "==> a Debian 12 root with systemd and a kernel in $cache/rootfs (once)"
    rm -rf "$cache/rootfs" && mkdir -p "$cache"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,passwd bookworm "$cache/rootfs" http://deb.debian.org/debian >/dev/null
    cp /etc/resolv.conf "$cache/rootfs/etc/resolv.conf"
    chroot "$cache/rootfs" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-image-amd64 >/dev/null'
fi

echo "==> the demo (collector, PEC database, signed plan), kept running"
cargo build -q -p transmissor-agent -p transmissor-collector -p xtask
setsid cargo xtask demo --keep --dir "$work/demo" >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 600); do grep -q "Everything keeps running" "$work/demo.log" && break; sleep 1; done
grep -q "Everything keeps running" "$work/demo.log" || { tail -30 "$work/demo.log"; exit 1; }
agent_cfg="$work/demo/agent-3550308/agent.toml"
db_port=$(sed -n 's/^port = //p' "$agent_cfg")
collector=$(sed -n 's/^endpoint = "\(.*\)"/\1/p' "$agent_cfg")
plan_key=$(sed -n 's/^keys = \["\(.*\)"\]/\1/p' "$agent_cfg")
collector_bin="$repo/target/debug/transmissor-collector"
token=$("$collector_bin" token issue --config "$work/demo/collector.toml" --ibge 3550308 2>/dev/null | tail -1)
# An operator's "run now", taken by the VM's agent with its first plan.
"$collector_bin" agent run-now --config "$work/demo/collector.toml" 3550308 >/dev/null 2>&1

echo "==> the VM's disk"
root="$work/rootfs"
cp -a "$cache/rootfs" "$root"
cp "$repo/target/debug/transmissor-agent" "$root/root/"
install -m 600 "$work/demo/agent-3550308/source.password" "$root/root/pw"
echo transmissor-vm >"$root/etc/hostname"
cat >"$root/root/test.sh" <<EOF
#!/bin/sh
echo "10.0.2.2 localhost" > /etc/hosts
cd /root
echo "===== install"
TRANSMISSOR_ENROLL_TOKEN='$token' ./transmissor-agent install --collector $collector --plan-key '$plan_key' \\
    --db-host 10.0.2.2 --db-port $db_port --db-name esus_3550308 --db-user transmissor_leitura --db-password-file /root/pw
echo "install exit \$?"
i=0; while [ \$i -lt 120 ]; do [ \$(journalctl -u transmissor-agent --no-pager | grep -c "run finished") -ge 4 ] && break; sleep 2; i=\$((i+1)); done
echo "===== journal"
journalctl -u transmissor-agent --no-pager -o cat
echo "===== doctor"
transmissor-agent doctor --lang en --config /etc/transmissor/agent.toml
echo "doctor exit \$?"
echo "===== install again"
./transmissor-agent install
echo "reinstall exit \$?"
echo "===== uninstall"
transmissor-agent uninstall
echo "uninstall exit \$?"
ls -d /etc/transmissor /var/lib/transmissor /usr/local/bin/transmissor-agent /etc/systemd/system/transmissor-agent.service 2>&1
getent passwd transmissor || echo "no user transmissor"
echo "===== end"
EOF
chmod +x "$root/root/test.sh"
cat >"$root/etc/systemd/system/vmcheck.service" <<'EOF'
[Unit]
After=network-online.target
Wants=network-online.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c '/root/test.sh > /root/vm-check.log 2>&1; sync; systemctl poweroff'
[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' >"$root/etc/systemd/network/en.network"
chroot "$root" systemctl enable -q vmcheck.service systemd-networkd systemd-networkd-wait-online
chroot "$root" systemctl mask -q serial-getty@ttyS0.service
mkfs.ext4 -q -d "$root" "$work/disk.img" 3G

echo "==> booting (qemu, TCG)"
timeout 900 qemu-system-x86_64 -accel tcg -cpu max -m 1536 -smp 1 \
    -kernel "$(ls "$root"/boot/vmlinuz-* | head -1)" -initrd "$(ls "$root"/boot/initrd.img-* | head -1)" \
    -append "root=/dev/vda rw console=ttyS0" -drive "file=$work/disk.img,format=raw,if=virtio" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 -nographic -no-reboot >"$work/console.log" 2>&1
mkdir -p "$work/mnt" && mount -o loop,ro "$work/disk.img" "$work/mnt"
cp "$work/mnt/root/vm-check.log" "$work/vm-check.log"
umount "$work/mnt"
cat "$work/vm-check.log"

fail=0
check() { grep -q "$1" "$work/vm-check.log" || { echo "MISSING: $2"; fail=1; }; }
check "install exit 0" "install succeeded"
check "done       systemctl restart transmissor-agent.service" "the service was started"
for job in equipes visitas_domiciliares unidades_saude lista_hipertensos; do
    check "transmission committed job=$job" "job $job committed under the unit's sandbox"
done
check "Service: transmissor-agent installed, enabled and running" "the doctor sees the service running"
check "reinstall exit 0" "a second install succeeded"
check "uninstall exit 0" "uninstall succeeded"
check "no user transmissor" "the user is gone"
[ "$(grep -c "cannot access" "$work/vm-check.log")" = 4 ] || { echo "MISSING: every installed path gone"; fail=1; }
[ "$(sed -n '/===== install again/,/===== uninstall/p' "$work/vm-check.log" | grep -cE '^(created|updated|repaired) ')" = 0 ] \
    || { echo "MISSING: the second install changed nothing"; fail=1; }
if [ $fail = 0 ]; then echo "==> vm check passed (log: $work/vm-check.log)"; else echo "==> vm check FAILED (log: $work/vm-check.log)"; exit 1; fi
