/**
 * GPU evidence verification (layer 2 of 3): the device certificate chain up to the pinned NVIDIA Device Identity
 * CA, the FWID the leaf certificate binds against the report's OPAQUE_FIELD_ID_FWID, the report signature (ECDSA
 * P-384 / SHA-384 over GET_MEASUREMENTS request ‖ MEASUREMENTS response without the signature, DSP0274 §10.11.1,
 * raw r‖s) with the leaf key, and the request nonce against the caller's. Revocation (OCSP) lives in `ocsp.ts`.
 * No policy here: which claims are acceptable is `validate.ts`'s job.
 */
import { equalBytes, hex } from '../bytes.ts';
import { rejected } from '../errors.ts';
import { type Certificate, OID } from '../x509/cert.ts';
import { type VerifiedChain, verifyChain } from '../x509/chain.ts';
import { TAG, parseDer, readOctetString, readOid, readSmallInt, reader } from '../x509/der.ts';
import { type P384Verifier, type SigAlg, verifySignature } from '../x509/signature.ts';
import { FWID_SIZE, type GpuAttestationReport } from './spdm.ts';

/** Every certificate on NVIDIA's device chains is ECDSA P-384 / SHA-384. */
export const GPU_CHAIN_ALGORITHMS: readonly SigAlg[] = ['ecdsa-p384-sha384'];
/** The leaf's FWID extension: the TCG DICE TcbInfo arc, as nvtrust and trustee read it. */
export const OID_NVIDIA_FWID = '2.23.133.5.4.1';

/**
 * FWID from the leaf's 2.23.133.5.4.1 extension. NVIDIA's value under that arc is
 * SEQUENCE { INTEGER version, SubjectPublicKeyInfo, SEQUENCE { hashAlgorithm OID (SHA-384), digest OCTET STRING } }
 * (read from the GH100 FMC leaf); undefined when the extension is absent.
 */
export function leafFwid(cert: Certificate): Uint8Array | undefined {
  const ext = cert.extensions.get(OID_NVIDIA_FWID);
  if (!ext) return undefined;
  try {
    const r = reader(parseDer(ext.value));
    readSmallInt(r.next(TAG.INTEGER));
    r.next(TAG.SEQUENCE);
    const f = reader(r.next(TAG.SEQUENCE));
    const alg = readOid(f.next(TAG.OID));
    const digest = readOctetString(f.next(TAG.OCTET_STRING));
    f.end();
    r.end();
    if (alg !== OID.sha384 || digest.length !== FWID_SIZE) throw new Error(`FWID hash ${alg} of ${digest.length} bytes, expected SHA-384`);
    return digest;
  } catch (e) {
    throw rejected('NVIDIA_FWID_INVALID', `certificate "${cert.subject.text}": FWID extension ${OID_NVIDIA_FWID} does not parse: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Chain (leaf first) to one of `roots`. At least leaf + one issuer: a lone root is not device evidence
 * (trustee case 2). The root may be included or not; `verifyChain` requires every issuer to be a CA.
 */
export async function verifyGpuChain(chain: readonly Certificate[], roots: readonly Certificate[], now: Date): Promise<VerifiedChain> {
  if (chain.length < 2) throw rejected('NVIDIA_CHAIN_TOO_SHORT', `GPU certificate chain has ${chain.length} certificate(s); a device chain needs the signing leaf and its issuers`);
  return verifyChain(chain, { now, roots, algorithms: GPU_CHAIN_ALGORITHMS });
}

/**
 * The leaf must carry the FWID when the report does, and they must be equal (nvtrust `verify_gpu_certificate_chain`):
 * this ties the device key to the firmware that produced the report.
 */
export function checkFwid(leaf: Certificate, report: GpuAttestationReport): string {
  const fromReport = report.response.opaque.fwid;
  const fromCert = leafFwid(leaf);
  if (fromReport && !fromCert) throw rejected('NVIDIA_FWID_MISSING', `the report carries FWID ${hex(fromReport)} but the signing certificate "${leaf.subject.text}" has no FWID extension (is the leaf missing from the chain?)`);
  if (fromReport && fromCert && !equalBytes(fromReport, fromCert))
    throw rejected('NVIDIA_FWID_MISMATCH', `FWID in the report ${hex(fromReport)} differs from the signing certificate's ${hex(fromCert)}`);
  return fromCert ? hex(fromCert) : 'no FWID in report or certificate';
}

export type { P384Verifier };

export async function verifyReportSignature(report: GpuAttestationReport, leaf: Certificate, verifier?: P384Verifier): Promise<void> {
  if (leaf.spki.algorithm.oid !== OID.ecPublicKey || leaf.spki.curveOid !== OID.p384)
    throw rejected('CERT_ALGORITHM', `signing certificate "${leaf.subject.text}" does not hold a P-384 key`);
  if (verifier) {
    if (report.response.signature.length !== 96 || !(await verifier(leaf.spki.raw, report.signedBytes, report.response.signature)))
      throw rejected('NVIDIA_REPORT_SIGNATURE', 'GPU attestation report: signature does not verify');
    return;
  }
  await verifySignature(leaf.spki, 'ecdsa-p384-sha384', report.signedBytes, report.response.signature, {
    allowed: ['ecdsa-p384-sha384'], failCode: 'NVIDIA_REPORT_SIGNATURE', what: 'GPU attestation report', ecdsaFormat: 'p1363',
  });
}

export function checkNonce(report: GpuAttestationReport, expected: Uint8Array): void {
  if (!equalBytes(report.request.nonce, expected))
    throw rejected('NVIDIA_NONCE_MISMATCH', `the report answers nonce ${hex(report.request.nonce)}, expected ${hex(expected)}`);
}

/** nvattest's unsigned copies of driver version, VBIOS version and nonce must say what the signed report says. */
export function checkDeclared(declared: { driverVersion?: string; vbiosVersion?: string; nonce?: string }, report: GpuAttestationReport): string {
  const op = report.response.opaque;
  const diffs: string[] = [];
  if (declared.driverVersion !== undefined && declared.driverVersion !== op.driverVersion) diffs.push(`driver_version ${declared.driverVersion} vs report ${op.driverVersion}`);
  if (declared.vbiosVersion !== undefined && declared.vbiosVersion.toLowerCase() !== op.vbiosVersion?.toLowerCase()) diffs.push(`vbios_version ${declared.vbiosVersion} vs report ${op.vbiosVersion}`);
  if (declared.nonce !== undefined && declared.nonce.toLowerCase() !== hex(report.request.nonce)) diffs.push(`nonce ${declared.nonce} vs report ${hex(report.request.nonce)}`);
  if (diffs.length > 0) throw rejected('NVIDIA_EVIDENCE_INCONSISTENT', `the evidence envelope contradicts the signed report: ${diffs.join('; ')}`);
  const n = Object.keys(declared).length;
  return n === 0 ? 'no unsigned copies in the envelope' : 'envelope copies equal the report';
}
