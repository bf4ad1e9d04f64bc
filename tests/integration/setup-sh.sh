#!/bin/bash
# tests/integration/setup-sh.sh: deploy/setup.sh status/config/reset against a fake sysfs tree
# (SYSFS_ROOT, PROC_MOUNTS) in a temp dir. Needs no root and changes nothing on the machine.
# The tree's attribute files are plain files, so each check reads back exactly what setup.sh
# wrote. Where a run needs the kernel's reaction to drivers_probe, drivers_probe is a FIFO read
# by fake_kernel below, which moves the driver link the way the kernel would.
# setup.sh decides and moves devices through `ferryctl devices ... --local` (env/pci), so this
# needs the build: $BUILD/bin/ferryctl (BUILD default: the repository's build/).
# Prints PASS:/FAIL: lines, ends with "N passed, N failed", exits non-zero on a failure.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
SETUP=$REPO/deploy/setup.sh
export FERRYCTL=${BUILD:-$REPO/build}/bin/ferryctl
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ferry-setup-sh.XXXXXX")
KERNEL_PID=""
cleanup() {
    if [ -n "$KERNEL_PID" ]; then kill "$KERNEL_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

T_PASS=0 T_FAIL=0 OUT="" RC=0
pass() { T_PASS=$((T_PASS + 1)); echo "PASS: $1"; }
fail() {
    T_FAIL=$((T_FAIL + 1)); echo "FAIL: $1${2:+ ($2)}"
    while IFS= read -r line; do echo "    | $line"; done <<< "$OUT"
}

# ---------------------------------------------------------------- the fake tree
# S = sysfs root of the current tree.
S=""
dev_dir() { echo "$S/devices/pci0000:00/$1"; }
put() { mkdir -p "$(dirname "$1")"; printf '%s' "$2" > "$1"; }

add_device() {                      # BDF CLASS DRIVER GROUP ("" = unbound / none)
    local bdf=$1 cls=$2 drv=$3 grp=$4 d
    d=$(dev_dir "$bdf")
    mkdir -p "$d"
    ln -s "../../../devices/pci0000:00/$bdf" "$S/bus/pci/devices/$bdf"
    put "$d/class" "$cls"$'\n'
    put "$d/vendor" 0x1b36$'\n'
    put "$d/device" 0x0010$'\n'
    put "$d/numa_node" 0$'\n'
    put "$d/driver_override" "(null)"$'\n'
    [ -z "$drv" ] || ln -s "../../../bus/pci/drivers/$drv" "$d/driver"
    if [ -n "$grp" ]; then
        mkdir -p "$S/kernel/iommu_groups/$grp/devices"
        ln -s "../../../kernel/iommu_groups/$grp" "$d/iommu_group"
        ln -s "../../../../devices/pci0000:00/$bdf" "$S/kernel/iommu_groups/$grp/devices/$bdf"
    fi
}

add_namespace() {                   # BDF CTRL DISK [PARTITION...]
    local bdf=$1 ctrl=$2 disk=$3 p
    shift 3
    mkdir -p "$(dev_dir "$bdf")/nvme/$ctrl/$disk" "$S/block/$disk/holders"
    for p in "$@"; do mkdir -p "$S/block/$disk/$p/holders"; done
}

# A fresh tree in $WORK/NAME (S points at its sysfs):
#   0000:00:03.0 NVMe on nvme, group 3, nvme0n1 whose partition nvme0n1p1 is mounted on /boot
#   0000:00:04.0 NVMe on nvme, group 4, nvme1n1: free
#   0000:00:05.0 a NIC (class 0x020000) on e1000e, group 5
#   0000:00:06.0 NVMe on nvme, no namespaces, but in group 5 with the NIC
#   0000:00:07.0 NVMe on nvme, group 7, nvme2n1 held by dm-0
#   0000:00:08.0 NVMe on nvme, group 8, nvme3n1 whose partition nvme3n1p2 is swap
#   2 MiB and 1 GiB hugepages on two nodes, none reserved; vfio loaded, no-IOMMU mode off.
make_tree() {
    local t=$WORK/$1 n size
    S=$t/sys
    mkdir -p "$S/bus/pci/devices" "$S/block"
    for n in nvme vfio-pci e1000e; do put "$S/bus/pci/drivers/$n/unbind" ""; done
    put "$S/bus/pci/drivers_probe" ""
    add_device 0000:00:03.0 0x010802 nvme 3
    add_namespace 0000:00:03.0 nvme0 nvme0n1 nvme0n1p1
    add_device 0000:00:04.0 0x010802 nvme 4
    add_namespace 0000:00:04.0 nvme1 nvme1n1
    add_device 0000:00:05.0 0x020000 e1000e 5
    add_device 0000:00:06.0 0x010802 nvme 5
    add_device 0000:00:07.0 0x010802 nvme 7
    add_namespace 0000:00:07.0 nvme2 nvme2n1
    mkdir -p "$S/block/nvme2n1/holders/dm-0"
    add_device 0000:00:08.0 0x010802 nvme 8
    add_namespace 0000:00:08.0 nvme3 nvme3n1 nvme3n1p1 nvme3n1p2
    put "$t/swaps" "Filename				Type		Size		Used		Priority
/dev/nvme3n1p2                          partition	8388604		0		-2
"
    for size in 2048 1048576; do
        put "$S/kernel/mm/hugepages/hugepages-${size}kB/nr_hugepages" 0$'\n'
        put "$S/kernel/mm/hugepages/hugepages-${size}kB/free_hugepages" 0$'\n'
        for n in 0 1; do
            put "$S/devices/system/node/node$n/hugepages/hugepages-${size}kB/nr_hugepages" 0$'\n'
            put "$S/devices/system/node/node$n/hugepages/hugepages-${size}kB/free_hugepages" 0$'\n'
        done
    done
    put "$S/module/vfio/parameters/enable_unsafe_noiommu_mode" N$'\n'
    put "$t/mounts" "/dev/sda1 / ext4 rw 0 0
/dev/nvme0n1p1 /boot ext4 rw,relatime 0 0
hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0
"
}

# The kernel's part of drivers_probe: the driver named in driver_override claims the device,
# nvme when there is no override. Every probed BDF is logged to $S/../probe.log.
start_fake_kernel() {
    local s=$S
    rm -f "$s/bus/pci/drivers_probe"
    mkfifo "$s/bus/pci/drivers_probe"
    : > "$s/../probe.log"
    (
        while :; do
            bdf=""
            read -r bdf < "$s/bus/pci/drivers_probe" || true
            [ -n "$bdf" ] || continue
            echo "$bdf" >> "$s/../probe.log"
            ovr=$(cat "$s/bus/pci/devices/$bdf/driver_override")
            case $ovr in ''|'(null)') drv=nvme ;; *) drv=$ovr ;; esac
            ln -sfn "../../../bus/pci/drivers/$drv" "$s/devices/pci0000:00/$bdf/driver"
        done
    ) &
    KERNEL_PID=$!
}
stop_fake_kernel() { kill "$KERNEL_PID" 2>/dev/null || true; wait "$KERNEL_PID" 2>/dev/null || true; KERNEL_PID=""; }

# ---------------------------------------------------------------- checks
run() {                             # ARGS...: setup.sh on the current tree -> $OUT, $RC
    RC=0
    OUT=$(SYSFS_ROOT=$S PROC_MOUNTS=$S/../mounts PROC_SWAPS=$S/../swaps "$SETUP" "$@" 2>&1) || RC=$?
}
expect_rc() { if [ "$RC" = "$2" ]; then pass "$1"; else fail "$1" "exit status $RC, expected $2"; fi; }
expect_out() {                      # NAME TEXT: output contains TEXT
    if grep -qF -- "$2" <<< "$OUT"; then pass "$1"; else fail "$1" "output lacks: $2"; fi
}
expect_out_re() {                   # NAME REGEX: a line of the output matches REGEX (grep -E)
    if grep -qE -- "$2" <<< "$OUT"; then pass "$1"; else fail "$1" "no output line matches: $2"; fi
}
expect_no_out() {
    if grep -qF -- "$2" <<< "$OUT"; then fail "$1" "output has: $2"; else pass "$1"; fi
}
expect_file() {                     # NAME FILE CONTENT: exact contents, trailing newlines too
    local got
    got=$(cat "$2"; echo .)
    if [ "$got" = "$3." ]; then pass "$1"; else fail "$1" "$2 holds '${got%.}', expected '$3'"; fi
}
expect_link() {                     # NAME BDF DRIVER
    local got
    got=$(readlink "$(dev_dir "$2")/driver" || true)
    if [ "${got##*/}" = "$3" ]; then pass "$1"; else fail "$1" "driver of $2 is '${got##*/}', expected '$3'"; fi
}
untouched() {                       # NAME BDF: setup.sh wrote nothing for this device
    expect_file "$1: driver_override untouched" "$(dev_dir "$2")/driver_override" "(null)"$'\n'
}
HP2=kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

# ---------------------------------------------------------------- help, usage
make_tree basic
run --help
expect_rc "--help exits 0" 0
expect_out "--help names config" "config    Reserve hugepages"
expect_out "--help documents SYSFS_ROOT" "SYSFS_ROOT"
run config --hugemem lots
expect_rc "config --hugemem lots: usage error" 2
run frobnicate
expect_rc "unknown command: usage error" 2

# ---------------------------------------------------------------- status
run status
expect_rc "status exits 0" 0
expect_out "status: 2M hugepages" "2M pages: total 0, free 0"
expect_out "status: node1 hugepages" "node1: total 0, free 0"
expect_out "status: IOMMU active" "IOMMU: active (5 groups"
expect_out "status: hugetlbfs mount" "hugetlbfs: mounted on /dev/hugepages"
expect_no_out "status: hugetlbfs mount named once" "/dev/hugepages/dev/hugepages"
expect_out "status: no-IOMMU mode off" "vfio no-IOMMU mode: disabled"
# The device table is ferryctl's (ferryctl devices --local): address, vendor:device, driver, IOMMU
# group, NUMA node, block devices; a line per reason a device is in use.
expect_out_re "status: free device line" "^  0000:00:04\.0 +1b36:0010 +nvme +4 +0 +nvme1n1( |$)"
expect_no_out "status: the free device has no in-use line" "in use: 0000:00:04.0"
expect_out "status: mounted partition" "0000:00:03.0: /dev/nvme0n1p1 is mounted on /boot"
expect_out "status: holder" "0000:00:07.0: /dev/nvme2n1 is held by dm-0"
expect_out "status: shared IOMMU group" "IOMMU group shared with: 0000:00:05.0 (e1000e)"
expect_no_out "status: the NIC is not listed" "  0000:00:05.0  "

# ---------------------------------------------------------------- refusals (nothing written)
run config --devices 0000:00:03.0
expect_rc "mounted device refused: exit 1" 1
expect_out "mounted device refused: says why" "refused 0000:00:03.0: in use"
expect_out "mounted device refused: names the mount" "0000:00:03.0: /dev/nvme0n1p1 is mounted on /boot"
expect_out "mounted device refused: nothing changed" "Nothing changed."
untouched "mounted device refused" 0000:00:03.0
expect_file "mounted device refused: no unbind" "$S/bus/pci/drivers/nvme/unbind" ""
expect_file "mounted device refused: no hugepages" "$S/$HP2" 0$'\n'

run config --devices 0000:00:07.0
expect_rc "held device refused: exit 1" 1
expect_out "held device refused: says why" "0000:00:07.0: /dev/nvme2n1 is held by dm-0 (device-mapper"
untouched "held device refused" 0000:00:07.0

run config --devices 0000:00:08.0
expect_rc "swap device refused: exit 1" 1
expect_out "swap device refused: says why" "0000:00:08.0: /dev/nvme3n1p2 is an active swap area"
untouched "swap device refused" 0000:00:08.0

run config --devices 0000:00:05.0
expect_rc "NIC refused: exit 1" 1
expect_out "NIC refused: says why" "refused 0000:00:05.0: class 0x020000 is not an NVMe controller (0x010802)"
untouched "NIC refused" 0000:00:05.0
expect_file "NIC refused: no unbind" "$S/bus/pci/drivers/e1000e/unbind" ""

run config --devices "0000:00:09.0 0000:00:4.0"
expect_rc "missing and malformed devices refused: exit 1" 1
expect_out "missing device refused" "refused 0000:00:09.0: no such PCI device"
expect_out "malformed address refused" "refused 0000:00:4.0: not a PCI address"

run config --devices 0000:00:06.0
expect_rc "shared IOMMU group refused: exit 1" 1
expect_out "shared IOMMU group refused: says why" "refused 0000:00:06.0: IOMMU group 5 also holds 0000:00:05.0 (e1000e) on another driver"
untouched "shared IOMMU group refused" 0000:00:06.0

# One good and one refused named device: all or nothing.
run config --devices 0000:00:04.0,0000:00:03.0
expect_rc "named devices, one refused: exit 1" 1
untouched "named devices, one refused: the good one" 0000:00:04.0
expect_file "named devices, one refused: no probe" "$S/bus/pci/drivers_probe" ""
expect_file "named devices, one refused: no hugepages" "$S/$HP2" 0$'\n'

# ---------------------------------------------------------------- writes, no kernel reacting
# Plain files: the writes are recorded but the driver link never changes, which is exactly what
# happens when vfio-pci is not loaded.
run config --hugemem 64 --devices 0000:00:04.0
expect_rc "no kernel reaction: exit 1" 1
expect_out "no kernel reaction: explains" "0000:00:04.0: $S/bus/pci/devices/0000:00:04.0/driver: driver is nvme, not vfio-pci, after drivers_probe. Is the vfio-pci module loaded (\`modprobe vfio-pci\`)?"
expect_out "fake tree: modprobe skipped, said so" "SYSFS_ROOT is not /sys: not running modprobe vfio-pci"
expect_out "fake tree: mount skipped, said so" "SYSFS_ROOT is not /sys, not mounting /dev/hugepages"
expect_file "driver_override written" "$(dev_dir 0000:00:04.0)/driver_override" "vfio-pci"
expect_file "unbind written to the nvme driver" "$S/bus/pci/drivers/nvme/unbind" "0000:00:04.0"
expect_file "drivers_probe written" "$S/bus/pci/drivers_probe" "0000:00:04.0"
expect_file "64 MiB = 32 x 2M hugepages" "$S/$HP2" 32
expect_out "hugepages reported" "hugepages: 32 x 2M reserved (64 MiB requested)"

# ---------------------------------------------------------------- config and reset with a kernel
make_tree kernel
start_fake_kernel
run config
expect_rc "default config: exit 0 (in-use devices only reported)" 0
expect_out "default config: binds the free device" "0000:00:04.0: bound to vfio-pci (was nvme)"
expect_out "default config: reports the mounted one" "refused 0000:00:03.0: in use"
expect_out "default config: reports the shared group" "refused 0000:00:06.0: IOMMU group 5"
expect_out "default config: reports the held one" "refused 0000:00:07.0: in use"
expect_out "default config: reports the swap one" "refused 0000:00:08.0: in use"
expect_link "default config: 0000:00:04.0 on vfio-pci" 0000:00:04.0 vfio-pci
expect_file "default config: only 0000:00:04.0 probed" "$S/../probe.log" "0000:00:04.0"$'\n'
expect_file "default config: unbind from nvme" "$S/bus/pci/drivers/nvme/unbind" "0000:00:04.0"
untouched "default config: mounted one" 0000:00:03.0
untouched "default config: held one" 0000:00:07.0
expect_file "default config: 1024 MiB = 512 x 2M" "$S/$HP2" 512

run status
expect_out_re "status after config: vfio-pci" "^  0000:00:04\.0 +1b36:0010 +vfio-pci +4 "

run config
expect_rc "config again: exit 0" 0
expect_out "config again: already bound" "0000:00:04.0: already bound to vfio-pci"
expect_out "config again: hugepages kept" "hugepages: 512 x 2M already reserved"
expect_file "config again: nothing probed" "$S/../probe.log" "0000:00:04.0"$'\n'

run reset
expect_rc "reset: exit 0" 0
expect_out "reset: back on nvme" "0000:00:04.0: back on nvme"
expect_out "reset: modprobe skipped, said so" "SYSFS_ROOT is not /sys: not running modprobe nvme"
expect_file "reset: driver_override cleared" "$(dev_dir 0000:00:04.0)/driver_override" $'\n'
expect_file "reset: unbind from vfio-pci" "$S/bus/pci/drivers/vfio-pci/unbind" "0000:00:04.0"
expect_file "reset: probed again" "$S/../probe.log" "0000:00:04.0"$'\n'"0000:00:04.0"$'\n'
expect_link "reset: 0000:00:04.0 on nvme" 0000:00:04.0 nvme
expect_file "reset: hugepages kept" "$S/$HP2" 512

run reset --devices 0000:00:05.0
expect_rc "reset of a NIC refused: exit 1" 1
expect_out "reset of a NIC refused: says why" "refused 0000:00:05.0: not an NVMe controller (class 0x020000)"
expect_file "reset of a NIC refused: no probe" "$S/../probe.log" "0000:00:04.0"$'\n'"0000:00:04.0"$'\n'

run reset --release-hugepages
expect_rc "reset --release-hugepages: exit 0" 0
expect_out "reset --release-hugepages: nothing on vfio" "No NVMe device is bound to vfio-pci."
expect_file "reset --release-hugepages: released" "$S/$HP2" 0

run config --force --hugemem 0 --devices 0000:00:03.0
expect_rc "--force binds a mounted device: exit 0" 0
expect_out "--force: warns" "WARNING: --force: binding 0000:00:03.0 although it is in use"
expect_link "--force: 0000:00:03.0 on vfio-pci" 0000:00:03.0 vfio-pci
expect_file "--hugemem 0 leaves hugepages alone" "$S/$HP2" 0

run config --hugemem 8 --node 1 --devices "0000:00:04.0 0000:00:04.0"
expect_rc "--node 1: exit 0" 0
expect_file "--node 1: node1 gets 4 x 2M" "$S/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages" 4
expect_file "--node 1: global count untouched" "$S/$HP2" 0
expect_out "a device named twice is bound once" "0000:00:04.0: bound to vfio-pci (was nvme)"
expect_file "a device named twice is probed once" "$S/../probe.log" "0000:00:04.0"$'\n'"0000:00:04.0"$'\n'"0000:00:03.0"$'\n'"0000:00:04.0"$'\n'

run config --hugemem 1024 --hugepage-size 1G --devices 0000:00:04.0
expect_file "--hugepage-size 1G: one 1G page" "$S/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages" 1
stop_fake_kernel

# ---------------------------------------------------------------- no IOMMU
make_tree noiommu
rm -rf "$S"/kernel/iommu_groups/* "$S"/devices/pci0000:00/*/iommu_group
run config --devices 0000:00:04.0
expect_rc "no IOMMU: refused, exit 1" 1
expect_out "no IOMMU: explains enabling the IOMMU" "intel_iommu=on or amd_iommu=on"
expect_out "no IOMMU: explains --noiommu" "pass --noiommu"
untouched "no IOMMU" 0000:00:04.0
expect_file "no IOMMU: no hugepages" "$S/$HP2" 0$'\n'
start_fake_kernel
run config --noiommu --devices 0000:00:04.0
expect_rc "--noiommu: exit 0" 0
expect_out "--noiommu: loud warning" "WARNING: enabling vfio's UNSAFE no-IOMMU mode"
expect_file "--noiommu: parameter written" "$S/module/vfio/parameters/enable_unsafe_noiommu_mode" 1
expect_link "--noiommu: 0000:00:04.0 on vfio-pci" 0000:00:04.0 vfio-pci
stop_fake_kernel

echo "$T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" -eq 0 ]
