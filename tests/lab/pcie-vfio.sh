#!/bin/bash
# tests/lab/pcie-vfio.sh: local NVMe SSDs driven from user space through VFIO.
# Two emulated NVMe controllers in a lab/guest (q35), ferryd exporting both as namespaces 1
# and 2 of one subsystem, the guest's own kernel initiator connecting over loopback with 2
# I/O queues (tests/lab/guest/pcie-guest.sh does the guest side):
#   1. behind the emulated IOMMU (intel-iommu, type1 VFIO): deploy/setup.sh binds the
#      controllers; fio write+verify 4k and 128k on both; each host I/O queue on its own
#      hardware queue (ferryd's log); a random pattern per SSD; ferryd killed with -9 during
#      fio and started again: the host reconnects and fio and the earlier data verify;
#      clean shutdown; setup.sh reset gives the controllers back to the kernel.
#   2. on the host, after the guest exited: the SSDs' backing images hold the data at the
#      offsets it was written to (fio's verify headers per block; the patterns' SHA-256).
#   3. the same guest without an IOMMU, reusing the images: setup.sh refuses to bind without
#      --noiommu and binds with it (vfio no-IOMMU mode, physical addresses); the patterns of
#      boot 1 read back through the fabric, fio write+verify on both;
#      with 2 hardware queues per SSD, held by the host's 2 I/O queues, another host's I/O
#      queue Connect is refused and ferryd logs "no hardware I/O queue left".
# Last line: "N passed, N failed".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$(readlink -f "$0")")/lib.sh"

lab_usage "usage: $(basename "$0")
Runs the VFIO (user-space PCIe NVMe) lab scenario with \$BUILD/bin/ferryd inside lab/guest.
Env: BUILD, FERRY_LAB, NVMF_LAB_CACHE." "$@"

NQN=nqn.2026-11.io.ferry:ssd
SIZE=8M          # fio region size per namespace: 4k blocks at 0, 128k blocks at 8M
GUEST_ARGS=(--nvme 2 --nvme-size 64 --timeout 900)

lab_begin pcie-vfio
stage_ferryd "$WORK/ferry"
cp "$REPO/deploy/setup.sh" "$WORK/setup.sh"
cat > "$WORK/pcie.json" <<JSON
{
  "listeners": [ { "address": "127.0.0.1", "port": 4420 } ],
  "subsystems": [
    { "nqn": "$NQN", "allow_any_host": true,
      "namespaces": [
        { "nsid": 1, "backend": "pcie", "device": "pcie://0000:00:04.0/1" },
        { "nsid": 2, "backend": "pcie", "device": "pcie://0000:00:05.0/1" } ] }
  ],
  "management": { "port": 0 }
}
JSON
DISKS=$WORK/disks
mkdir -p "$DISKS"
COPIES=(--copy "$WORK/ferry" --copy "$WORK/pcie.json" --copy "$WORK/setup.sh")

# ---- 1. IOMMU, controllers bound by setup.sh, kill -9 restart
run_guest iommu --bin "$REPO/tests/lab/guest/pcie-guest.sh" --args "full $SIZE" --no-vfio \
    --disk-dir "$DISKS" --ioqpairs 4 "${GUEST_ARGS[@]}" "${COPIES[@]}" || true
PATTERNS=()
if [ -r "$GUEST_CONSOLE" ]; then
    mapfile -t PATTERNS < <(tr -d '\r' < "$GUEST_CONSOLE" | sed -n 's/^PATTERN \(ns[12]\) \([0-9]*\) \([0-9]*\) \([0-9a-f]*\)$/\1:\2:\3:\4/p')
fi

# ---- 2. the data is on the SSDs' backing images, at the offsets written
check_pattern() {  # check_pattern IMAGE OFFSET_MIB MIB SHA
    local got
    got=$(dd if="$1" bs=1M skip="$2" count="$3" status=none | sha256sum | cut -d' ' -f1)
    echo "    $1 at $2 MiB: $got (written $4)"
    [ "$got" = "$4" ]
}
check "the guest wrote a pattern to each SSD" test "${#PATTERNS[@]}" -eq 2 || true
for n in 1 2; do
    img=$DISKS/nvme$((n - 1))-ns1.raw
    check "ns$n: fio's blocks are on $(basename "$img") at their offsets" check_fio_blocks "$img" $((8 << 20)) || true
done
for p in "${PATTERNS[@]}"; do
    IFS=: read -r ns off mib sha <<< "$p"
    img=$DISKS/nvme$(( ${ns#ns} - 1 ))-ns1.raw
    check "$ns: the random pattern is on $(basename "$img") byte for byte" check_pattern "$img" "$off" "$mib" "$sha" || true
done

# ---- 3. no IOMMU, same images: the data of boot 1 and a fresh write+verify
run_guest noiommu --bin "$REPO/tests/lab/guest/pcie-guest.sh" --args "basic $SIZE ${PATTERNS[*]}" --no-iommu --no-vfio \
    --disk-dir "$DISKS" --ioqpairs 2 "${GUEST_ARGS[@]}" "${COPIES[@]}" || true

lab_finish
