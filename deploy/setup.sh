#!/bin/bash
# deploy/setup.sh: hugepages and vfio-pci binding for ferry's userspace NVMe driver, a small and
# explicit cousin of SPDK's scripts/setup.sh. Only sysfs writes (nvme-reference.md 6.1, 6.6), no
# state files: sysfs is read again on every run. The device rules and binding are ferryctl's
# (`ferryctl devices ... --local`, env/pci). `deploy/setup.sh --help` for usage.
set -euo pipefail
shopt -s nullglob

usage() {
    cat <<'EOF'
Usage: deploy/setup.sh COMMAND [OPTIONS]

Prepares a Linux machine for ferry's userspace NVMe driver: reserves hugepages and moves NVMe
controllers from the kernel nvme driver to vfio-pci, and back. config and reset need root.

Commands:
  status    Show hugepages (total/free per size and NUMA node), the hugetlbfs mount, whether an
            IOMMU is active and whether vfio no-IOMMU mode is on, and every NVMe-class PCI device:
            BDF, vendor:device, driver, IOMMU group, NUMA node, block devices and whether they are
            mounted, swap or held. Changes nothing.

  config    Reserve hugepages, mount hugetlbfs on /dev/hugepages, load vfio-pci and bind devices to
            it (driver_override = vfio-pci, unbind, drivers_probe, then check the driver link).
      --hugemem MiB          hugepage memory to reserve (default 1024). The page count is raised
                             to cover it, never lowered; 0 leaves hugepages alone.
      --hugepage-size 2M|1G  (default 2M; 1G pages usually have to be reserved at boot)
      --node N               reserve on NUMA node N (default: the global count, which the kernel
                             spreads over the nodes)
      --devices "BDF ..."    devices to bind (default: every NVMe device not in use)
      --noiommu              if there is no IOMMU: enable vfio's unsafe no-IOMMU mode. The device
                             can then DMA to any physical memory and the kernel is tainted.
      --force                bind devices even if a filesystem on them is mounted or they have
                             holders (their data and whatever uses them will break)

  reset     Give devices on vfio-pci back to the kernel: modprobe nvme, clear driver_override,
            unbind from vfio-pci, drivers_probe, then check that nvme took them. Refuses a device
            that is not NVMe class or whose /dev/vfio group a process has open (e.g. ferryd).
      --devices "BDF ..."    (default: every NVMe device bound to vfio-pci)
      --release-hugepages    also write 0 to nr_hugepages of --hugepage-size (and --node). This
                             frees hugepages whoever reserved them; pages still in use stay
                             until their owner exits.
      --hugepage-size 2M|1G, --node N   as for config

  help, -h, --help

config refuses (touches nothing of) a device that:
  - is not a PCI address (DDDD:BB:DD.F) or does not exist in sysfs;
  - is not an NVMe controller (class 0x010802);
  - has a block device or partition that is mounted, is an active swap area or has holders
    (LVM, device-mapper, md), unless --force;
  - shares its IOMMU group with a device bound to a driver other than vfio-pci, pci-stub or
    pcieport (vfio could not use the group). --force does not override this.
If any device named with --devices is refused, config changes nothing at all and exits 1.
Refusals of devices from the default list are only reported; if none is left to bind, config
says so, still reserves hugepages and exits 0. Without an IOMMU (/sys/kernel/iommu_groups
empty) config changes nothing unless --noiommu is given or no-IOMMU mode is already on. config
exits 1 if a device did not end up on vfio-pci.

Which devices may move and the moving itself are ferry's C++ code (env/pci, the rules ferryd's
REST API applies too), run as `ferryctl devices attach|detach|list --local`, which needs no
running ferryd; this script keeps hugepages, modules and the IOMMU check.

Environment:
  FERRYCTL     ferryctl to run (default: build/bin/ferryctl next to this script, else ferryctl
               on PATH)
  SYSFS_ROOT   sysfs root (default /sys). Any other value (a fake tree for tests) also skips
               modprobe, the hugetlbfs mount and the root check, and says so.
  PROC_MOUNTS  mount table to check devices against (default /proc/mounts)
  PROC_SWAPS   active swap areas (default /proc/swaps; a missing file means none)

Exit status: 0 done, 1 refused or failed, 2 bad usage.
EOF
}

SYSFS=${SYSFS_ROOT:-/sys}
SYSFS=${SYSFS%/}
MOUNTS=${PROC_MOUNTS:-/proc/mounts}
SWAPS=${PROC_SWAPS:-/proc/swaps}
PCI=$SYSFS/bus/pci/devices
REAL=1
[ "$SYSFS" = /sys ] || REAL=0

err() { echo "error: $*" >&2; }
die() { err "$@"; exit 1; }
usage_error() { err "$* (deploy/setup.sh --help)"; exit 2; }
warn() { echo "WARNING: $*" >&2; }

# ---------------------------------------------------------------- sysfs reading
attr() { cat "$1" 2>/dev/null || true; }            # FILE: contents, "" if absent

iommu_groups() { local g=("$SYSFS"/kernel/iommu_groups/*); echo ${#g[@]}; }
noiommu_param() { echo "$SYSFS/module/vfio/parameters/enable_unsafe_noiommu_mode"; }
noiommu_on() { case $(attr "$(noiommu_param)") in Y|y|1) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------- devices: ferryctl --local
# Which devices may move between nvme and vfio-pci, and the moving itself, are ferry's C++ code
# (env/pci: the same rules ferryd's /api/v1/devices applies), run through
# `ferryctl devices ... --local`, which needs no running ferryd.
find_ferryctl() {
    local here
    here=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
    if [ -n "${FERRYCTL:-}" ]; then echo "$FERRYCTL"
    elif [ -x "$here/build/bin/ferryctl" ]; then echo "$here/build/bin/ferryctl"
    elif command -v ferryctl >/dev/null; then command -v ferryctl
    else die "ferryctl not found: build ferry (ninja -C build), install it, or set FERRYCTL=PATH"
    fi
}
ctl_local() {                                        # devices VERB ARGS...: ferryctl on $SYSFS
    local verb=$1; shift
    "$CTL" devices "$verb" --local --sysfs "$SYSFS" --mounts "$MOUNTS" --swaps "$SWAPS" "$@"
}

# ---------------------------------------------------------------- sysfs writing
# One write of VALUE (no newline added), as sysfs wants; the error names the device, the file and
# the kernel's answer.
sysfs_write() {                                      # BDF FILE VALUE
    local out shown=$3
    [ "$3" = $'\n' ] && shown='\n'
    if ! out=$( { printf '%s' "$3" > "$2"; } 2>&1 ); then
        err "$1: $2: cannot write '$shown': ${out##*: }"
        return 1
    fi
}

# ---------------------------------------------------------------- hugepages
HP_SIZE=2M HP_NODE=""
hp_kb() { case $HP_SIZE in 2M) echo 2048 ;; 1G) echo 1048576 ;; esac; }
hp_dir() {                                           # nr_hugepages dir for HP_SIZE and HP_NODE
    if [ -n "$HP_NODE" ]; then
        echo "$SYSFS/devices/system/node/node$HP_NODE/hugepages/hugepages-$(hp_kb)kB"
    else
        echo "$SYSFS/kernel/mm/hugepages/hugepages-$(hp_kb)kB"
    fi
}

show_hugepages() {
    local d kb n size
    echo "Hugepages:"
    for d in "$SYSFS"/kernel/mm/hugepages/hugepages-*; do
        kb=${d##*-}; kb=${kb%kB}
        if [ "$kb" -ge 1048576 ]; then size=$((kb / 1048576))G; else size=$((kb / 1024))M; fi
        echo "  $size pages: total $(attr "$d/nr_hugepages"), free $(attr "$d/free_hugepages")"
        for n in "$SYSFS"/devices/system/node/node*/hugepages/hugepages-"$kb"kB; do
            local node=${n%/hugepages/*}; node=${node##*/}
            echo "    $node: total $(attr "$n/nr_hugepages"), free $(attr "$n/free_hugepages")"
        done
    done
    [ -d "$SYSFS/kernel/mm/hugepages" ] || echo "  none ($SYSFS/kernel/mm/hugepages missing)"
}

reserve_hugepages() {                                # MiB
    local mib=$1 dir pages cur got
    dir=$(hp_dir)
    [ -d "$dir" ] || die "$dir does not exist: no $HP_SIZE hugepages${HP_NODE:+ on NUMA node $HP_NODE} on this machine"
    pages=$(( (mib * 1024 + $(hp_kb) - 1) / $(hp_kb) ))
    cur=$(attr "$dir/nr_hugepages")
    if [ "${cur:-0}" -ge "$pages" ]; then
        echo "hugepages: $cur x $HP_SIZE already reserved in $dir (need $pages for $mib MiB)"
        return
    fi
    sysfs_write "hugepages" "$dir/nr_hugepages" "$pages" || exit 1
    got=$(attr "$dir/nr_hugepages")
    if [ "${got:-0}" -lt "$pages" ]; then
        die "hugepages: asked for $pages x $HP_SIZE ($mib MiB) in $dir/nr_hugepages, the kernel granted" \
            "only ${got:-0}: not enough free contiguous memory. Reserve them at boot (hugepages=$pages" \
            "hugepagesz=$HP_SIZE on the kernel command line) or ask for less (--hugemem)."
    fi
    echo "hugepages: $got x $HP_SIZE reserved${HP_NODE:+ on node $HP_NODE} ($mib MiB requested)"
}

mount_hugetlbfs() {
    if [ $REAL = 0 ]; then echo "hugetlbfs: SYSFS_ROOT is not /sys, not mounting /dev/hugepages"; return; fi
    if awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { found = 1 } END { exit !found }' "$MOUNTS"; then
        echo "hugetlbfs: already mounted on /dev/hugepages"
        return
    fi
    mkdir -p /dev/hugepages
    mount -t hugetlbfs -o "pagesize=$HP_SIZE" nodev /dev/hugepages || die "cannot mount hugetlbfs on /dev/hugepages"
    echo "hugetlbfs: mounted on /dev/hugepages (pagesize=$HP_SIZE)"
}

# ---------------------------------------------------------------- commands
cmd_status() {
    local groups
    show_hugepages
    local hm
    hm=$(awk '$3 == "hugetlbfs" { print $2 }' "$MOUNTS" 2>/dev/null | tr '\n' ' ')
    if [ -n "$hm" ]; then echo "hugetlbfs: mounted on ${hm% }"; else echo "hugetlbfs: not mounted"; fi
    groups=$(iommu_groups)
    if [ "$groups" -gt 0 ] && [ -e "$(noiommu_param)" ] && noiommu_on; then
        echo "IOMMU: $groups groups in $SYSFS/kernel/iommu_groups, but vfio no-IOMMU mode is on (they may be" \
             "its own groups, not an IOMMU's)"
    elif [ "$groups" -gt 0 ]; then
        echo "IOMMU: active ($groups groups in $SYSFS/kernel/iommu_groups)"
    else
        echo "IOMMU: none ($SYSFS/kernel/iommu_groups is empty): vfio needs --noiommu (unsafe)"
    fi
    if [ ! -e "$(noiommu_param)" ]; then
        echo "vfio no-IOMMU mode: unknown (vfio module not loaded)"
    elif noiommu_on; then
        echo "vfio no-IOMMU mode: ENABLED (devices can DMA anywhere)"
    else
        echo "vfio no-IOMMU mode: disabled"
    fi
    echo "NVMe devices:"
    CTL=$(find_ferryctl)
    ctl_local list | sed 's/^/  /'
}

cmd_config() {
    local hugemem=1024 devices="" explicit=0 noiommu=0 force=0
    while [ $# -gt 0 ]; do
        case $1 in
            --hugemem) hugemem=${2:-}; shift 2 || usage_error "--hugemem needs a value" ;;
            --hugepage-size) HP_SIZE=${2:-}; shift 2 || usage_error "--hugepage-size needs a value" ;;
            --node) HP_NODE=${2:-}; shift 2 || usage_error "--node needs a value" ;;
            --devices) devices=${2:-}; explicit=1; shift 2 || usage_error "--devices needs a value" ;;
            --noiommu) noiommu=1; shift ;;
            --force) force=1; shift ;;
            *) usage_error "config: unknown option '$1'" ;;
        esac
    done
    [[ $hugemem =~ ^[0-9]+$ ]] || usage_error "--hugemem: '$hugemem' is not a number of MiB"
    [[ $HP_SIZE == 2M || $HP_SIZE == 1G ]] || usage_error "--hugepage-size: '$HP_SIZE' is not 2M or 1G"
    [[ -z $HP_NODE || $HP_NODE =~ ^[0-9]+$ ]] || usage_error "--node: '$HP_NODE' is not a node number"
    [ $REAL = 0 ] || [ "$(id -u)" = 0 ] || die "config writes to /sys: run it as root"
    [ -d "$PCI" ] || die "$PCI does not exist: is SYSFS_ROOT right?"
    [ -r "$MOUNTS" ] || die "$MOUNTS: cannot read the mount table, so cannot tell which devices are in use"

    # 1. Decide what to bind, before changing anything (ferryctl prints every refusal; a refused
    # named device makes it exit 1 having changed nothing).
    CTL=$(find_ferryctl)
    local candidates=() bind=() ctl_args=() plan rc=0
    [ $force = 0 ] || ctl_args+=(--force)
    if [ $explicit = 1 ]; then
        read -r -a candidates <<< "${devices//,/ }"
        [ ${#candidates[@]} -gt 0 ] || usage_error "--devices: no device given"
    fi
    plan=$(ctl_local attach --dry-run "${ctl_args[@]}" "${candidates[@]}") || rc=$?
    [ -z "$plan" ] || grep -v '^would bind ' <<< "$plan" || true
    mapfile -t bind < <(sed -n 's/^would bind //p' <<< "$plan")
    [ $rc = 0 ] || exit 1

    # 2. The IOMMU, before touching anything.
    local use_noiommu=0
    if [ ${#bind[@]} -gt 0 ] && [ "$(iommu_groups)" -eq 0 ]; then
        if [ $noiommu = 1 ]; then
            use_noiommu=1
        elif noiommu_on; then
            warn "no IOMMU, but vfio no-IOMMU mode is already enabled: the devices will DMA to physical addresses unchecked"
        else
            die "no IOMMU is active ($SYSFS/kernel/iommu_groups is empty), so vfio-pci will not take the devices. Either" \
                "enable the IOMMU (VT-d/AMD-Vi in the firmware, intel_iommu=on or amd_iommu=on on the kernel command" \
                "line, reboot), or pass --noiommu to use vfio's unsafe no-IOMMU mode (no DMA protection, root only," \
                "taints the kernel)."
        fi
    elif [ $noiommu = 1 ] && [ ${#bind[@]} -gt 0 ]; then
        echo "IOMMU is active: --noiommu not needed, not enabling no-IOMMU mode"
    fi

    # 3. Hugepages.
    if [ "$hugemem" -gt 0 ]; then
        reserve_hugepages "$hugemem"
        mount_hugetlbfs
    fi

    # 4. Modules and binding.
    if [ ${#bind[@]} -gt 0 ]; then
        if [ $use_noiommu = 1 ]; then
            warn "enabling vfio's UNSAFE no-IOMMU mode: the devices can DMA to any physical memory, nothing" \
                 "protects the kernel from a bad address, and the kernel is tainted."
            if [ -e "$(noiommu_param)" ]; then
                sysfs_write vfio "$(noiommu_param)" 1 || exit 1
            elif [ $REAL = 1 ]; then
                modprobe vfio enable_unsafe_noiommu_mode=1 || die "modprobe vfio enable_unsafe_noiommu_mode=1 failed"
            else
                echo "SYSFS_ROOT is not /sys: not running modprobe vfio enable_unsafe_noiommu_mode=1"
            fi
            if [ $REAL = 1 ] || [ -e "$(noiommu_param)" ]; then
                noiommu_on || die "vfio no-IOMMU mode is not on ($(noiommu_param): '$(attr "$(noiommu_param)")'):" \
                                  "is CONFIG_VFIO_NOIOMMU enabled in this kernel?"
            fi
        fi
        if [ $REAL = 1 ]; then
            modprobe vfio-pci || die "modprobe vfio-pci failed: is CONFIG_VFIO_PCI enabled in this kernel?"
        else
            echo "SYSFS_ROOT is not /sys: not running modprobe vfio-pci"
        fi
    fi
    # The plan above checked use and IOMMU groups of the whole set; --force binds exactly it.
    if [ ${#bind[@]} -gt 0 ]; then ctl_local attach --force --quiet "${bind[@]}" || exit 1; fi
    return 0
}

cmd_reset() {
    local devices="" explicit=0 release=0
    while [ $# -gt 0 ]; do
        case $1 in
            --devices) devices=${2:-}; explicit=1; shift 2 || usage_error "--devices needs a value" ;;
            --release-hugepages) release=1; shift ;;
            --hugepage-size) HP_SIZE=${2:-}; shift 2 || usage_error "--hugepage-size needs a value" ;;
            --node) HP_NODE=${2:-}; shift 2 || usage_error "--node needs a value" ;;
            *) usage_error "reset: unknown option '$1'" ;;
        esac
    done
    [[ $HP_SIZE == 2M || $HP_SIZE == 1G ]] || usage_error "--hugepage-size: '$HP_SIZE' is not 2M or 1G"
    [[ -z $HP_NODE || $HP_NODE =~ ^[0-9]+$ ]] || usage_error "--node: '$HP_NODE' is not a node number"
    [ $REAL = 0 ] || [ "$(id -u)" = 0 ] || die "reset writes to /sys: run it as root"

    CTL=$(find_ferryctl)
    local candidates=() back=() bad=0 plan
    if [ $explicit = 1 ]; then
        read -r -a candidates <<< "${devices//,/ }"
        [ ${#candidates[@]} -gt 0 ] || usage_error "--devices: no device given"
    fi
    plan=$(ctl_local detach --dry-run "${candidates[@]}") || bad=1
    [ -z "$plan" ] || grep -v '^would detach ' <<< "$plan" || true
    mapfile -t back < <(sed -n 's/^would detach //p' <<< "$plan")
    if [ ${#back[@]} -gt 0 ]; then
        if [ $REAL = 1 ]; then
            modprobe nvme || die "modprobe nvme failed"
        else
            echo "SYSFS_ROOT is not /sys: not running modprobe nvme"
        fi
        ctl_local detach "${back[@]}" || bad=1
    fi

    if [ $release = 1 ]; then
        local dir left
        dir=$(hp_dir)
        [ -d "$dir" ] || die "$dir does not exist: no $HP_SIZE hugepages here"
        sysfs_write hugepages "$dir/nr_hugepages" 0 || exit 1
        left=$(attr "$dir/nr_hugepages")
        if [ "${left:-0}" -gt 0 ]; then
            echo "hugepages: released; $left x $HP_SIZE still in use by running programs (freed when they exit)"
        else
            echo "hugepages: released all $HP_SIZE pages${HP_NODE:+ on node $HP_NODE}"
        fi
    fi
    [ $bad = 0 ] || exit 1
}

case ${1:-} in
    status) shift; [ $# -eq 0 ] || usage_error "status takes no options"; cmd_status ;;
    config) shift; cmd_config "$@" ;;
    reset) shift; cmd_reset "$@" ;;
    help|-h|--help) usage ;;
    '') usage >&2; exit 2 ;;
    *) usage_error "unknown command '$1'" ;;
esac
