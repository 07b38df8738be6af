/**
 * A simulated AMD signer (after go-sev-guest `testing/fake_certs.go` AmdSignerBuilder): a fake ARK → ASK/ASVK →
 * VCEK/VLEK chain in AMD's real certificate format (KDS spec pub. 57230: RSA-PSS SHA-384 chain, P-384 leaf, the
 * 1.3.6.1.4.1.3704.1.* extensions) and attestation reports in the real ABI layout (SNP ABI pub. 56860 Table 23),
 * with any field overridden. Used by the tests (change one field, expect one code) and by the enclave's `sim` TEE
 * provider. Every subject name says "sim"; verifiers accept this chain only when the caller passes its roots.
 *
 * The ARK and ASK are RSA-2048 here (AMD's are RSA-4096) so a test run generates them quickly; the algorithm
 * (RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48) is the same.
 */
import { concat, own } from '../bytes.ts';
import { OID } from '../x509/cert.ts';
import {
  ALG, type ExtensionSpec, basicConstraints, certificate, crl as writeCrl, ia5, int, keyUsage, name, webCryptoSigner,
} from '../x509/der-write.ts';
import { type AmdProduct, type Cpuid, REPORT_SIZE, SIGNED_LENGTH, type TcbLayout } from './abi.ts';
import { AMD_OID } from './extensions.ts';

export interface SimTcb {
  readonly fmc?: number;
  readonly bootloader: number;
  readonly tee: number;
  readonly snp: number;
  readonly microcode: number;
}

/** Every field of a report the sim writes; all optional (defaults fit the sim chain). */
export interface SimReportFields {
  readonly version?: number;
  readonly guestSvn?: number;
  readonly policy?: bigint;
  readonly familyId?: Uint8Array;
  readonly imageId?: Uint8Array;
  readonly vmpl?: number;
  readonly signatureAlgo?: number;
  readonly currentTcb?: SimTcb | bigint;
  readonly platformInfo?: bigint;
  /** The whole SIGNER_INFO word; default from the endorsement kind (VCEK 0, VLEK 1 << 2). */
  readonly signerInfo?: number;
  readonly reportData?: Uint8Array;
  readonly measurement?: Uint8Array;
  readonly hostData?: Uint8Array;
  readonly idKeyDigest?: Uint8Array;
  readonly authorKeyDigest?: Uint8Array;
  readonly reportId?: Uint8Array;
  readonly reportIdMa?: Uint8Array;
  readonly reportedTcb?: SimTcb | bigint;
  readonly cpuid?: Cpuid;
  readonly chipId?: Uint8Array;
  readonly committedTcb?: SimTcb | bigint;
  readonly currentVersion?: { major: number; minor: number; build: number };
  readonly committedVersion?: { major: number; minor: number; build: number };
  readonly launchTcb?: SimTcb | bigint;
  readonly launchMitVector?: bigint;
  readonly currentMitVector?: bigint;
  /** Raw byte patches applied last, before signing (for reserved-byte tests). */
  readonly patch?: readonly (readonly [offset: number, bytes: Uint8Array])[];
}

/** Overrides for an issued VCEK/VLEK certificate, one extension check at a time. */
export interface SimEndorsementOverrides {
  readonly tcb?: SimTcb;
  readonly hwId?: Uint8Array;
  readonly productName?: string;
  /** Extension OIDs to leave out. */
  readonly omit?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly serial?: number;
  readonly cspId?: string;
  /** Issue a P-256 key instead of P-384 (a key the verifier must refuse). */
  readonly curve?: 'P-384' | 'P-256';
  /** Certify these SubjectPublicKeyInfo bytes instead of the generated key (e.g. a point not on the curve). */
  readonly spki?: Uint8Array;
}

export interface SimEndorsement {
  readonly kind: 'vcek' | 'vlek';
  readonly der: Uint8Array;
  /** Builds a report with `fields` and signs it with this key. */
  signReport(fields?: SimReportFields): Promise<Uint8Array>;
}

export interface SimAmd {
  readonly product: AmdProduct;
  readonly arkDer: Uint8Array;
  readonly askDer: Uint8Array;
  readonly asvkDer: Uint8Array;
  readonly chipId: Uint8Array;
  readonly tcb: SimTcb;
  readonly vcek: SimEndorsement;
  readonly vlek: SimEndorsement;
  /** The roots to pass as `options.roots` for a report signed by a VCEK (default) or a VLEK. */
  roots(kind?: 'vcek' | 'vlek'): { ark: Uint8Array; ask: Uint8Array };
  issueEndorsement(kind: 'vcek' | 'vlek', overrides?: SimEndorsementOverrides): Promise<SimEndorsement>;
  /** A CRL signed by the ARK (as AMD's `/crl`) or by the ASK, revoking `serials`. */
  crl(serials: readonly number[], opts?: { issuer?: 'ark' | 'ask'; thisUpdate?: Date; nextUpdate?: Date }): Promise<Uint8Array>;
  /** The report the sim would sign, unsigned (zero signature), for parser tests. */
  buildReport(fields?: SimReportFields, kind?: 'vcek' | 'vlek'): Uint8Array;
}

export interface SimAmdOptions {
  readonly product?: AmdProduct;
  readonly tcb?: SimTcb;
  readonly chipId?: Uint8Array;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

const CPUID: Record<AmdProduct, Cpuid> = {
  Milan: { family: 0x19, model: 0x01, stepping: 0x01 },
  Genoa: { family: 0x19, model: 0x11, stepping: 0x01 },
  Turin: { family: 0x1a, model: 0x02, stepping: 0x00 },
};
const PRODUCT_NAME: Record<AmdProduct, string> = { Milan: 'Milan-B0', Genoa: 'Genoa-B1', Turin: 'Turin' };

export function encodeTcb(t: SimTcb | bigint, layout: TcbLayout): bigint {
  if (typeof t === 'bigint') return t;
  const b = (v: number, i: number) => BigInt(v & 0xff) << BigInt(8 * i);
  return layout === 'turin'
    ? b(t.fmc ?? 0, 0) | b(t.bootloader, 1) | b(t.tee, 2) | b(t.snp, 3) | b(t.microcode, 7)
    : b(t.bootloader, 0) | b(t.tee, 1) | b(t.snp, 6) | b(t.microcode, 7);
}

function amdName(cn: string): Uint8Array {
  return name([
    ['2.5.4.11', 'Engineering'], ['2.5.4.6', 'US'], ['2.5.4.7', 'Santa Clara'], ['2.5.4.8', 'CA'],
    ['2.5.4.10', 'Advanced Micro Devices (gm sim)'], ['2.5.4.3', cn],
  ]);
}

async function rsaKey(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(
    { name: 'RSA-PSS', modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1), hash: 'SHA-384' }, true, ['sign', 'verify'],
  )) as CryptoKeyPair;
}
async function ecKey(curve: 'P-384' | 'P-256' = 'P-384'): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, ['sign', 'verify'])) as CryptoKeyPair;
}
const spkiOf = async (k: CryptoKey) => new Uint8Array(await crypto.subtle.exportKey('spki', k));

const filled = (n: number, v: number) => new Uint8Array(n).fill(v);

/** Creates a simulated AMD for one product: keys, ARK, ASK, ASVK, a VCEK and a VLEK. */
export async function createSimAmd(options: SimAmdOptions = {}): Promise<SimAmd> {
  const product = options.product ?? 'Genoa';
  const layout: TcbLayout = product === 'Turin' ? 'turin' : 'milan-genoa';
  const tcb: SimTcb = options.tcb ?? (product === 'Turin' ? { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 } : { bootloader: 10, tee: 0, snp: 23, microcode: 84 });
  const chipId = options.chipId ?? (product === 'Turin' ? concat(Uint8Array.from([0x51, 0x4d, 0, 1, 2, 3, 4, 5]), new Uint8Array(56)) : Uint8Array.from({ length: 64 }, (_, i) => (i * 7 + 3) & 0xff));
  const notBefore = options.notBefore ?? new Date('2024-01-01T00:00:00Z');
  const notAfter = options.notAfter ?? new Date('2049-01-01T00:00:00Z');

  const [arkKey, askKey, asvkKey] = await Promise.all([rsaKey(), rsaKey(), rsaKey()]);
  const arkName = amdName(`ARK-${product} (sim)`);
  const askName = amdName(`SEV-${product} (sim)`);
  const asvkName = amdName(`SEV-VLEK-${product} (sim)`);
  const caExt = (pathLen?: number): ExtensionSpec[] => [
    { oid: OID.basicConstraints, critical: true, value: basicConstraints(true, pathLen) },
    { oid: OID.keyUsage, critical: true, value: keyUsage([5, 6]) },
  ];
  const arkSign = webCryptoSigner(arkKey.privateKey);
  const arkDer = await certificate({ serial: 1, signatureAlgorithm: ALG.rsaPssSha384, issuer: arkName, subject: arkName, notBefore, notAfter, spki: await spkiOf(arkKey.publicKey), extensions: caExt() }, arkSign);
  const askDer = await certificate({ serial: 2, signatureAlgorithm: ALG.rsaPssSha384, issuer: arkName, subject: askName, notBefore, notAfter, spki: await spkiOf(askKey.publicKey), extensions: caExt(0) }, arkSign);
  const asvkDer = await certificate({ serial: 3, signatureAlgorithm: ALG.rsaPssSha384, issuer: arkName, subject: asvkName, notBefore, notAfter, spki: await spkiOf(asvkKey.publicKey), extensions: caExt(0) }, arkSign);

  const buildReport = (f: SimReportFields = {}, kind: 'vcek' | 'vlek' = 'vcek'): Uint8Array => {
    const version = f.version ?? 3;
    const b = new Uint8Array(REPORT_SIZE);
    const dv = new DataView(b.buffer);
    const put = (o: number, v: Uint8Array | undefined, n: number) => {
      if (v === undefined) return;
      if (v.length !== n) throw new RangeError(`sim report: field at 0x${o.toString(16)} must be ${n} bytes`);
      b.set(v, o);
    };
    const tcbAt = (o: number, t: SimTcb | bigint | undefined) => dv.setBigUint64(o, encodeTcb(t ?? tcb, layout), true);
    dv.setUint32(0x00, version, true);
    dv.setUint32(0x04, f.guestSvn ?? 1, true);
    dv.setBigUint64(0x08, f.policy ?? 0x30000n, true);
    put(0x10, f.familyId, 16);
    put(0x20, f.imageId, 16);
    dv.setUint32(0x30, f.vmpl ?? 0, true);
    dv.setUint32(0x34, f.signatureAlgo ?? 1, true);
    tcbAt(0x38, f.currentTcb);
    dv.setBigUint64(0x40, f.platformInfo ?? 0x25n, true);
    dv.setUint32(0x48, f.signerInfo ?? (kind === 'vlek' ? 1 << 2 : 0), true);
    put(0x50, f.reportData ?? new Uint8Array(64), 64);
    put(0x90, f.measurement ?? filled(48, 0x4d), 48);
    put(0xc0, f.hostData, 32);
    put(0xe0, f.idKeyDigest, 48);
    put(0x110, f.authorKeyDigest, 48);
    put(0x140, f.reportId ?? filled(32, 0x1d), 32);
    put(0x160, f.reportIdMa ?? filled(32, 0xff), 32);
    tcbAt(0x180, f.reportedTcb);
    if (version >= 3) {
      const c = f.cpuid ?? CPUID[product];
      b[0x188] = c.family;
      b[0x189] = c.model;
      b[0x18a] = c.stepping;
    }
    put(0x1a0, f.chipId ?? (kind === 'vlek' ? new Uint8Array(64) : chipId), 64);
    tcbAt(0x1e0, f.committedTcb);
    const cur = f.currentVersion ?? { major: 1, minor: 55, build: 40 };
    b.set([cur.build, cur.minor, cur.major], 0x1e8);
    const com = f.committedVersion ?? cur;
    b.set([com.build, com.minor, com.major], 0x1ec);
    tcbAt(0x1f0, f.launchTcb);
    if (version >= 5) {
      dv.setBigUint64(0x1f8, f.launchMitVector ?? 0n, true);
      dv.setBigUint64(0x200, f.currentMitVector ?? 0n, true);
    }
    for (const [o, v] of f.patch ?? []) b.set(v, o);
    return b;
  };

  const endorsement = async (kind: 'vcek' | 'vlek', ov: SimEndorsementOverrides = {}): Promise<SimEndorsement> => {
    const key = await ecKey(ov.curve);
    const t = ov.tcb ?? tcb;
    const spl = (n: number): Uint8Array => int(n);
    const all: ExtensionSpec[] = [
      { oid: AMD_OID.structVersion, value: int(product === 'Turin' ? 1 : 0) },
      { oid: AMD_OID.productName, value: ia5(ov.productName ?? PRODUCT_NAME[product]) },
      ...(product === 'Turin' ? [{ oid: AMD_OID.fmcSpl, value: spl(t.fmc ?? 0) }] : []),
      { oid: AMD_OID.blSpl, value: spl(t.bootloader) },
      { oid: AMD_OID.teeSpl, value: spl(t.tee) },
      { oid: AMD_OID.snpSpl, value: spl(t.snp) },
      ...[4, 5, 6, 7].map((i) => ({ oid: `1.3.6.1.4.1.3704.1.3.${i}`, value: spl(0) })),
      { oid: AMD_OID.ucodeSpl, value: spl(t.microcode) },
      kind === 'vcek'
        ? { oid: AMD_OID.hwId, value: ov.hwId ?? (product === 'Turin' ? chipId.subarray(0, 8) : chipId) }
        : { oid: AMD_OID.cspId, value: ia5(ov.cspId ?? 'CN=csp.sim.invalid') },
    ];
    const der = await certificate({
      serial: ov.serial ?? 0,
      signatureAlgorithm: ALG.rsaPssSha384,
      issuer: kind === 'vcek' ? askName : asvkName,
      subject: amdName(kind === 'vcek' ? 'SEV-VCEK (sim)' : 'SEV-VLEK (sim)'),
      notBefore: ov.notBefore ?? notBefore,
      notAfter: ov.notAfter ?? new Date('2031-01-01T00:00:00Z'),
      spki: ov.spki ?? (await spkiOf(key.publicKey)),
      extensions: all.filter((e) => !ov.omit?.includes(e.oid)),
    }, webCryptoSigner(kind === 'vcek' ? askKey.privateKey : asvkKey.privateKey));
    const size = ov.curve === 'P-256' ? 32 : 48;
    return {
      kind,
      der,
      async signReport(fields = {}) {
        const b = buildReport(fields, kind);
        const sig = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, key.privateKey, own(b.subarray(0, SIGNED_LENGTH))));
        // P1363 big-endian r‖s → 72-byte little-endian R at 0x2A0 and S at 0x2E8.
        for (let i = 0; i < size; i++) {
          b[0x2a0 + i] = sig[size - 1 - i]!;
          b[0x2e8 + i] = sig[2 * size - 1 - i]!;
        }
        return b;
      },
    };
  };

  const [vcek, vlek] = await Promise.all([endorsement('vcek'), endorsement('vlek')]);
  return {
    product, arkDer, askDer, asvkDer, chipId, tcb, vcek, vlek, buildReport,
    roots: (kind = 'vcek') => ({ ark: arkDer, ask: kind === 'vcek' ? askDer : asvkDer }),
    issueEndorsement: endorsement,
    async crl(serials, opts = {}) {
      const byArk = (opts.issuer ?? 'ark') === 'ark';
      return writeCrl({
        signatureAlgorithm: ALG.rsaPssSha384,
        issuer: byArk ? arkName : askName,
        thisUpdate: opts.thisUpdate ?? notBefore,
        nextUpdate: opts.nextUpdate ?? notAfter,
        revoked: serials.map((serial) => ({ serial, date: notBefore })),
      }, webCryptoSigner(byArk ? arkKey.privateKey : askKey.privateKey));
    },
  };
}
