/**
 * vCPU signatures: the value QEMU puts in RDX of each initial VMSA, which is CPUID Fn0000_0001_EAX of the guest CPU
 * model (AMD CPUID Specification #25481, "Family, Model, Stepping Identifiers": extended family in bits 27:20,
 * extended model 19:16, base family 11:8, base model 7:4, stepping 3:0; base family saturates at 0xF).
 * Family/model/stepping per QEMU's x86 CPU model definitions (target/i386/cpu.c).
 */
export function cpuSignature(family: number, model: number, stepping: number): number {
  const famLow = family > 0xf ? 0xf : family;
  const famHigh = family > 0xf ? (family - 0xf) & 0xff : 0;
  return ((famHigh << 20) | (((model >> 4) & 0xf) << 16) | (famLow << 8) | ((model & 0xf) << 4) | (stepping & 0xf)) >>> 0;
}

const EPYC = cpuSignature(23, 1, 2);
const ROME = cpuSignature(23, 49, 0);
const MILAN = cpuSignature(25, 1, 1);
const GENOA = cpuSignature(25, 17, 0);
const TURIN = cpuSignature(26, 0, 0);

/** QEMU `-cpu` model names → signature. Versioned aliases keep the family/model/stepping of their base model. */
export const VCPU_TYPES: Readonly<Record<string, number>> = {
  EPYC, 'EPYC-v1': EPYC, 'EPYC-v2': EPYC, 'EPYC-IBPB': EPYC, 'EPYC-v3': EPYC, 'EPYC-v4': EPYC,
  'EPYC-Rome': ROME, 'EPYC-Rome-v1': ROME, 'EPYC-Rome-v2': ROME, 'EPYC-Rome-v3': ROME, 'EPYC-Rome-v4': ROME,
  'EPYC-Milan': MILAN, 'EPYC-Milan-v1': MILAN, 'EPYC-Milan-v2': MILAN,
  'EPYC-Genoa': GENOA, 'EPYC-Genoa-v1': GENOA,
  'EPYC-Turin': TURIN, 'EPYC-Turin-v1': TURIN,
};
