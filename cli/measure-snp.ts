/**
 * `gm measure snp --ovmf FILE --vcpus N (--vcpu-type NAME | --vcpu-sig N) [--vmm qemu|ec2|gce]
 *  [--kernel FILE [--initrd FILE] [--append TEXT]] [--guest-features N] [--ovmf-hash HEX]
 *  [--svsm FILE --vars-size N] [--sev-es] [--report FILE | --expected HEX] [--json]`
 *
 * Prints the launch digest a SEV-SNP report carries as MEASUREMENT (48 bytes hex), to pin in a policy's
 * `measurements`. --json adds every input's digest and the launch digest after each step, so a mismatch can be
 * traced to the piece that differs. --sev-es prints the 32-byte SEV-ES digest instead.
 * --report (an SEV-SNP report or Azure HCL report, in any encoding gm reads) or --expected compares the result with
 * the MEASUREMENT a guest reported; the report's signature is not checked here (that is `gm verify snp`).
 * Exit 0 printed (and equal, when compared), 1 different, 2 usage or input error.
 */
import { hex } from '../attestation/bytes.ts';
import { decodeEvidence } from '../attestation/encoding.ts';
import { parseReport } from '../attestation/sevsnp/abi.ts';
import { parseHclReport } from '../attestation/sevsnp/hcl.ts';
import { configError } from '../attestation/errors.ts';
import { type SnpMeasurement, measureSevEs, measureSnp } from '../attestation/measure/snp.ts';
import { VCPU_TYPES } from '../attestation/measure/vcpu.ts';
import type { Vmm } from '../attestation/measure/vmsa.ts';
import type { MeasureSnpFlags } from './commands.ts';
import type { Io } from './io.ts';

/** A non-negative integer in decimal or 0x-hex, as the VMM's own options are written. */
function integer(name: string, s: string, max: bigint): bigint {
  if (!/^(0x[0-9a-fA-F]+|[0-9]+)$/.test(s)) throw configError('USAGE', `--${name} ${JSON.stringify(s)} is not a decimal or 0x-hex integer`);
  const v = BigInt(s);
  if (v > max) throw configError('USAGE', `--${name} ${s} is too large`);
  return v;
}

export async function run(v: MeasureSnpFlags, io: Io): Promise<number> {
  // Measurement inputs come only from the command line (no GM_* variables): an ambient GM_KERNEL must not change a digest.
  if (!v.ovmf) throw configError('USAGE', '--ovmf is required');
  if (!v.vcpus) throw configError('USAGE', '--vcpus is required');
  const vmm = (v.vmm ?? 'qemu') as Vmm;
  if (!['qemu', 'ec2', 'gce'].includes(vmm)) throw configError('USAGE', `--vmm ${JSON.stringify(v.vmm)} is not qemu, ec2 or gce`);
  if (v['vcpu-type'] !== undefined && v['vcpu-sig'] !== undefined) throw configError('USAGE', 'give --vcpu-type or --vcpu-sig, not both');
  let vcpuSig: number | undefined;
  if (v['vcpu-type'] !== undefined) {
    vcpuSig = VCPU_TYPES[v['vcpu-type']];
    if (vcpuSig === undefined) throw configError('USAGE', `--vcpu-type ${JSON.stringify(v['vcpu-type'])} is not one of ${Object.keys(VCPU_TYPES).join(', ')}`);
  } else if (v['vcpu-sig'] !== undefined) vcpuSig = Number(integer('vcpu-sig', v['vcpu-sig'], 0xffffffffn));
  const vcpus = Number(integer('vcpus', v.vcpus!, 512n));
  const file = async (name: 'ovmf' | 'kernel' | 'initrd' | 'svsm') => {
    const p = v[name];
    return p === undefined ? undefined : io.readFile(p);
  };
  const ovmf = (await file('ovmf'))!;
  const kernel = await file('kernel');
  const initrd = await file('initrd');
  const append = v.append;

  let m: SnpMeasurement;
  if (v['sev-es']) {
    for (const n of ['svsm', 'vars-size', 'guest-features', 'ovmf-hash'] as const) if (v[n] !== undefined) throw configError('USAGE', `--${n} does not apply to SEV-ES`);
    m = measureSevEs({ ovmf, kernel, initrd, append, vcpus, vcpuSig, vmm });
  } else {
    let ovmfHash: Uint8Array | undefined;
    if (v['ovmf-hash'] !== undefined) {
      if (!/^[0-9a-fA-F]{96}$/.test(v['ovmf-hash'])) throw configError('USAGE', '--ovmf-hash must be 48 bytes of hex');
      ovmfHash = Uint8Array.from(v['ovmf-hash'].match(/../g)!.map((x) => parseInt(x, 16)));
    }
    m = measureSnp({
      ovmf, ovmfHash, kernel, initrd, append, vcpus, vcpuSig, vmm,
      guestFeatures: integer('guest-features', v['guest-features'] ?? '0x1', 0xffffffffffffffffn),
      svsm: await file('svsm'),
      varsSize: v['vars-size'] === undefined ? undefined : Number(integer('vars-size', v['vars-size'], 0xffffffffn)),
    });
  }
  let expected: string | undefined;
  if (v.report !== undefined && v.expected !== undefined) throw configError('USAGE', 'give --report or --expected, not both');
  if (v.expected !== undefined) {
    expected = v.expected.toLowerCase().replace(/^0x/, '');
    if (!new RegExp(`^[0-9a-f]{${2 * m.measurement.length}}$`).test(expected)) throw configError('USAGE', `--expected must be ${m.measurement.length} bytes of hex`);
  } else if (v.report !== undefined) {
    if (v['sev-es']) throw configError('USAGE', '--report holds an SEV-SNP MEASUREMENT; an SEV-ES digest is not in one');
    const d = decodeEvidence(await io.readFile(v.report), 'snp-report', v.report);
    expected = hex(parseReport(d.structure === 'Azure HCL report' ? parseHclReport(d.bytes).snpReport : d.bytes).measurement);
  }
  const matches = expected === undefined ? undefined : expected === hex(m.measurement);
  if (v.json) io.out(`${JSON.stringify({ ...m.inputs, ...(expected ? { expected, matches } : {}), steps: m.steps }, null, 2)}\n`);
  else io.out(`${hex(m.measurement)}\n`);
  if (matches === false) {
    io.err(`gm measure snp: the computed MEASUREMENT differs from ${v.report ?? '--expected'} (${expected}); --json shows every input's digest to compare with the launch configuration\n`);
    return 1;
  }
  return 0;
}
