/**
 * Initial VMSA pages as the hypervisor creates them before SNP_LAUNCH_UPDATE (the VMSA page type is measured by
 * its SHA-384, so every byte of the 4 KiB page counts).
 *
 * Offsets: AMD64 APM vol. 2, Appendix B, Table B-4 "VMSA Layout, State Save Area for SEV-ES" (segment registers
 * {u16 selector, u16 attrib, u32 limit, u64 base} at 0x000..0x09F; EFER 0x0D0, CR4 0x148, CR0 0x158, DR7 0x160,
 * DR6 0x168, RFLAGS 0x170, RIP 0x178, G_PAT 0x268, RDX 0x310, SEV_FEATURES 0x3B0, XCR0 0x3E8, MXCSR 0x408,
 * X87_FCW 0x410). Everything else is zero.
 *
 * Register values are the reset state KVM/QEMU give a vCPU (APM vol. 2 §14.1.3 "Processor Initialization State"):
 * real mode, CS selector 0xF000, CR0 ET, EFER.SVME, CR4.MCE, PAT default 0x0007040600070406, RDX = CPUID signature.
 * The BSP starts at the reset vector 0xFFFFFFF0; APs at the firmware's SEV-ES reset block address, split into a
 * CS base (upper 16 bits) and RIP (lower 16). EC2 and GCE differ in a few attribute bits and FPU defaults, as
 * their published launch digests show.
 */

export type Vmm = 'qemu' | 'ec2' | 'gce';

export const VMSA_SIZE = 4096;
export const BSP_EIP = 0xfffffff0;

const OFF = {
  es: 0x000, cs: 0x010, ss: 0x020, ds: 0x030, fs: 0x040, gs: 0x050, gdtr: 0x060, ldtr: 0x070, idtr: 0x080, tr: 0x090,
  efer: 0x0d0, cr4: 0x148, cr0: 0x158, dr7: 0x160, dr6: 0x168, rflags: 0x170, rip: 0x178, g_pat: 0x268,
  rdx: 0x310, sev_features: 0x3b0, xcr0: 0x3e8, mxcsr: 0x408, x87_fcw: 0x410,
} as const;

const PAT_DEFAULT = 0x0007040600070406n;

interface Seg { selector: number; attrib: number; limit: number; base: number }

class Page {
  readonly bytes = new Uint8Array(VMSA_SIZE);
  private readonly dv = new DataView(this.bytes.buffer);
  seg(at: number, s: Seg): void {
    this.dv.setUint16(at, s.selector, true);
    this.dv.setUint16(at + 2, s.attrib, true);
    this.dv.setUint32(at + 4, s.limit, true);
    this.dv.setBigUint64(at + 8, BigInt(s.base), true);
  }
  u64(at: number, v: bigint | number): void {
    this.dv.setBigUint64(at, BigInt(v), true);
  }
  u32(at: number, v: number): void {
    this.dv.setUint32(at, v, true);
  }
  u16(at: number, v: number): void {
    this.dv.setUint16(at, v, true);
  }
}

const real = (selector: number, attrib: number, base = 0): Seg => ({ selector, attrib, limit: 0xffff, base });

export interface VmsaOptions {
  readonly vmm: Vmm;
  /** SEV_FEATURES (the guest features word; 0 for SEV-ES). */
  readonly sevFeatures: bigint;
  /** CPUID Fn0000_0001_EAX, loaded into RDX by QEMU (EC2 and GCE load 0x600 whatever the CPU). */
  readonly vcpuSig: number;
}

/** The reset-state VMSA of a vCPU starting at `eip` (real mode). */
export function resetVmsa(eip: number, o: VmsaOptions): Uint8Array {
  let cs = 0x9b, ss = 0x93, tr = 0x8b, rdx = o.vcpuSig, mxcsr = 0x1f80, fcw = 0x37f, pat = PAT_DEFAULT;
  if (o.vmm === 'ec2') {
    // EC2's BSP CS is not marked accessed; its SS and TR use the non-accessed / 16-bit busy TSS types.
    cs = eip === BSP_EIP ? 0x9a : 0x9b;
    ss = 0x92;
    tr = 0x83;
    rdx = 0x600;
    mxcsr = 0;
    fcw = 0;
  } else if (o.vmm === 'gce') {
    pat = 0x00070106n;
    rdx = 0x600;
    mxcsr = 0;
    fcw = 0;
  }
  const p = new Page();
  p.seg(OFF.es, real(0, 0x93));
  p.seg(OFF.cs, real(0xf000, cs, (eip & 0xffff0000) >>> 0)); // >>> 0: JS bit operators are signed 32-bit
  p.seg(OFF.ss, real(0, ss));
  p.seg(OFF.ds, real(0, 0x93));
  p.seg(OFF.fs, real(0, 0x93));
  p.seg(OFF.gs, real(0, 0x93));
  p.seg(OFF.gdtr, real(0, 0));
  p.seg(OFF.idtr, real(0, 0));
  p.seg(OFF.ldtr, real(0, 0x82));
  p.seg(OFF.tr, real(0, tr));
  p.u64(OFF.efer, 0x1000); // EFER.SVME
  p.u64(OFF.cr4, 0x40); // CR4.MCE
  p.u64(OFF.cr0, 0x10); // CR0.ET
  p.u64(OFF.dr7, 0x400);
  p.u64(OFF.dr6, 0xffff0ff0);
  p.u64(OFF.rflags, 0x2);
  p.u64(OFF.rip, eip & 0xffff);
  p.u64(OFF.g_pat, pat);
  p.u64(OFF.rdx, rdx >>> 0);
  p.u64(OFF.sev_features, o.sevFeatures);
  p.u64(OFF.xcr0, 0x1);
  p.u32(OFF.mxcsr, mxcsr);
  p.u16(OFF.x87_fcw, fcw);
  return p.bytes;
}

/**
 * The VMSA QEMU creates for a Coconut SVSM: every vCPU enters the SVSM's 32-bit protected-mode entry point with flat
 * 4 GiB segments (CS selector 8, data selectors 16, attributes with G and D/B set), CR0 PE|ET, SEV_FEATURES =
 * SNPActive only. The x87 control word stays zero in this VMSA (only MXCSR is set), as the published SVSM digests show.
 */
export function svsmVmsa(eip: number, vcpuSig: number): Uint8Array {
  const flat = (selector: number, attrib: number): Seg => ({ selector, attrib, limit: 0xffffffff, base: 0 });
  const p = new Page();
  p.seg(OFF.es, flat(16, 0xc93));
  p.seg(OFF.cs, flat(8, 0xc9b));
  p.seg(OFF.ss, flat(16, 0xc93));
  p.seg(OFF.ds, flat(16, 0xc93));
  p.seg(OFF.fs, flat(16, 0xc93));
  p.seg(OFF.gs, real(0, 0x93));
  p.seg(OFF.gdtr, real(0, 0));
  p.seg(OFF.idtr, real(0, 0));
  p.seg(OFF.ldtr, real(0, 0x82));
  p.seg(OFF.tr, real(0, 0x8b));
  p.u64(OFF.efer, 0x1000);
  p.u64(OFF.cr4, 0x40);
  p.u64(OFF.cr0, 0x11);
  p.u64(OFF.dr7, 0x400);
  p.u64(OFF.dr6, 0xffff0ff0);
  p.u64(OFF.rflags, 0x2);
  p.u64(OFF.rip, eip);
  p.u64(OFF.g_pat, PAT_DEFAULT);
  p.u64(OFF.rdx, vcpuSig >>> 0);
  p.u64(OFF.sev_features, 1);
  p.u64(OFF.xcr0, 0x1);
  p.u32(OFF.mxcsr, 0x1f80);
  return p.bytes;
}
