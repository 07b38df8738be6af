#!/bin/sh
# Builds the enclave's confidential-VM image from pinned inputs and prints the command that computes its measurement.
#   deploy/enclave-vm/build.sh [OUTPUT_DIR]        (root, Debian with mkosi, debootstrap, cpio, zstd; network to
#                                                   snapshot.debian.org and the npm registry)
# Outputs: gm-enclave.cpio (initrd = the whole root file system), gm-enclave.vmlinuz, gm-enclave.cmdline, SHA256SUMS.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/out}"
. "$here/pins.env"
# Reproducibility: every timestamp is the commit's.
SOURCE_DATE_EPOCH="$(git -C "$repo" log -1 --format=%ct)"
export SOURCE_DATE_EPOCH

# gm is staged outside the repository (a second extra tree), so nothing of it is picked up by the repository's tests.
stage="$out/stage/opt/gm"
rm -rf "$out/stage" && mkdir -p "$stage" "$out"
# gm at this commit (tracked files only: nothing from the working tree that is not committed), without its tests.
git -C "$repo" archive --format=tar HEAD -- bin attestation protocol client cli enclave worker host trust package.json package-lock.json ':(exclude)*.test.ts' | tar -x -C "$stage"
(cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund)
# Node.js from the npm registry, refused unless its integrity is the pinned one.
tgz="$(cd "$out" && npm pack --silent "$NODE_PACKAGE")"
got="$(node -e "const c=require('crypto');process.stdout.write('sha512-'+c.createHash('sha512').update(require('fs').readFileSync(process.argv[1])).digest('base64'))" "$out/$tgz")"
[ "$got" = "$NODE_INTEGRITY" ] || { echo "build.sh: $NODE_PACKAGE integrity $got is not the pinned $NODE_INTEGRITY" >&2; exit 1; }
mkdir -p "$stage/node" && tar -xzf "$out/$tgz" -C "$stage/node" --strip-components=1 && rm "$out/$tgz"
find "$here/mkosi.extra" "$out/stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# DEBIAN_MIRROR overrides the pinned snapshot (e.g. a local mirror of it); any other archive state is not this image.
mirror="${DEBIAN_MIRROR:-https://snapshot.debian.org/archive/debian/$DEBIAN_SNAPSHOT/}"
[ "$mirror" = "https://snapshot.debian.org/archive/debian/$DEBIAN_SNAPSHOT/" ] || echo "build.sh: DEBIAN_MIRROR=$mirror replaces the pinned snapshot: this build is not reproducible" >&2
mkosi -C "$here" --release "$DEBIAN_RELEASE" --mirror "$mirror" --extra-tree "$here/mkosi.extra" --extra-tree "$out/stage" \
  --output-dir "$out" --force build
rm -rf "$out/stage"
# mkosi 14 writes into <distribution>~<release>/ under the output directory; newer versions into it directly.
[ -f "$out/gm-enclave.cpio" ] || mv "$out/debian~$DEBIAN_RELEASE/gm-enclave.cpio" "$out/debian~$DEBIAN_RELEASE/gm-enclave.cpio.manifest" "$out/"
# The kernel the image installed, for QEMU -kernel (measured into the SEV hashes table / RTMR1 like the initrd).
(cd "$out" && cpio -i --quiet --to-stdout '*boot/vmlinuz-*' < gm-enclave.cpio > gm-enclave.vmlinuz)
printf '%s' "$KERNEL_CMDLINE" > "$out/gm-enclave.cmdline"
(cd "$out" && sha256sum gm-enclave.cpio gm-enclave.vmlinuz gm-enclave.cmdline > SHA256SUMS)
cat <<MSG
Built $out/gm-enclave.{cpio,vmlinuz,cmdline}. Its SEV-SNP launch measurement, for the OVMF (AmdSev build) and vCPUs you launch with:
  gm measure snp --ovmf OVMF.fd --vcpus 4 --vcpu-type EPYC-Genoa \\
    --kernel $out/gm-enclave.vmlinuz --initrd $out/gm-enclave.cpio --append "$KERNEL_CMDLINE"
MSG
