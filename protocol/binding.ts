/**
 * Key binding (docs/design.md §4; byte layout fixed in docs/protocol.md §7): the 64-byte REPORT_DATA a TEE report carries
 * (SEV-SNP REPORT_DATA, TDX REPORTDATA) commits to the protocol version, a verifier's nonce, the OHTTP key
 * configurations and the signing key of the attested party, so evidence cannot be replayed for other keys.
 *
 *   REPORT_DATA = SHA-512( u8(len(label)) || label || u16(version) || nonce[32]
 *                          || SHA-256(application/ohttp-keys bytes)[32] || u16(len(signingKey)) || signingKey )
 *                          [ || SHA-256(settings)[32] ] [ || SHA-256(models)[32] ] )
 *   label       = "gm/v1 report-data enclave" | "gm/v1 report-data worker"
 *
 * An enclave also binds its trust-relevant settings (docs/protocol.md §12.3): `settings` is the deterministic CBOR of
 * the bundle's `settings` map, and its digest follows the signing key only when the bundle carries settings.
 * A worker binds the identity of the models it serves the same way (docs/protocol.md §12.4): `models` is its model
 * manifest (protocol/model-identity.ts), whose digest follows the signing key only when the bundle carries one. Each
 * role has at most one optional trailing digest, so the encoding stays injective within a role.
 *
 * A worker's GPU evidence carries a nonce derived from its CPU REPORT_DATA, so the GPU report is bound to the CPU report:
 *
 *   gpuNonce = SHA-256( u8(len(label)) || "gm/v1 gpu-nonce" || REPORT_DATA[64] )
 *
 * Every field has a fixed length or a length prefix, so the encoding is injective; the role in the label keeps an
 * enclave's evidence from passing as a worker's and the reverse.
 */
import { protocolError } from '../attestation/errors.ts';

/** Protocol version bound into REPORT_DATA. */
export const PROTOCOL_VERSION = 1;
export const NONCE_LENGTH = 32;
export const REPORT_DATA_LENGTH = 64;
/** The nonce of boot evidence (GET /v1/attestation without `nonce`). */
export const BOOT_NONCE: Uint8Array = new Uint8Array(NONCE_LENGTH);

export type BindingRole = 'enclave' | 'worker';

export interface ReportDataInput {
  /** `enclave` binds the receipt public key; `worker` binds its offer-signing key. */
  readonly role: BindingRole;
  /** The verifier's 32-byte nonce, or BOOT_NONCE (32 zero bytes) for boot evidence. */
  readonly nonce: Uint8Array;
  /** The application/ohttp-keys bytes exactly as served at /.well-known/ohttp-gateway. */
  readonly keyConfigs: Uint8Array;
  /** The signing public key in its raw encoding (e.g. 65-byte uncompressed P-256 point, 32-byte Ed25519 key). */
  readonly signingKey: Uint8Array;
  /** Defaults to PROTOCOL_VERSION. */
  readonly version?: number;
  /** Enclave only: the encoded settings the bundle carries (attestation/bundle.ts encodeEnclaveSettings). */
  readonly settings?: Uint8Array;
  /** Worker only: the model manifest the bundle carries (protocol/model-identity.ts encodeManifest). */
  readonly models?: Uint8Array;
}

const te = new TextEncoder();

function labelled(label: string): Uint8Array {
  const l = te.encode(label);
  const out = new Uint8Array(1 + l.length);
  out[0] = l.length;
  out.set(l, 1);
  return out;
}

async function digest(alg: 'SHA-256' | 'SHA-512', b: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest(alg, new Uint8Array(b)));
}

/** The exact bytes hashed into REPORT_DATA (exposed so docs and tests can show them). */
export async function reportDataPreimage(i: ReportDataInput): Promise<Uint8Array> {
  if (i.role !== 'enclave' && i.role !== 'worker') throw protocolError('BINDING_BAD_INPUT', 'role must be enclave or worker');
  if (i.nonce.length !== NONCE_LENGTH) throw protocolError('BINDING_BAD_INPUT', 'nonce must be 32 bytes');
  if (i.signingKey.length === 0 || i.signingKey.length > 0xffff) throw protocolError('BINDING_BAD_INPUT', 'signing key length out of range');
  const version = i.version ?? PROTOCOL_VERSION;
  if (!Number.isInteger(version) || version < 0 || version > 0xffff) throw protocolError('BINDING_BAD_INPUT', 'version out of range');
  const label = labelled(`gm/v1 report-data ${i.role}`);
  if (i.settings !== undefined && i.role !== 'enclave') throw protocolError('BINDING_BAD_INPUT', 'only an enclave binds settings');
  if (i.models !== undefined && i.role !== 'worker') throw protocolError('BINDING_BAD_INPUT', 'only a worker binds a model manifest');
  const kc = await digest('SHA-256', i.keyConfigs);
  // The signing key is length-prefixed, so the optional trailing digest keeps the encoding injective.
  const extra = i.settings ?? i.models;
  const st = extra === undefined ? undefined : await digest('SHA-256', extra);
  const out = new Uint8Array(label.length + 2 + NONCE_LENGTH + 32 + 2 + i.signingKey.length + (st ? 32 : 0));
  let o = 0;
  out.set(label, o);
  o += label.length;
  out[o++] = version >> 8;
  out[o++] = version & 0xff;
  out.set(i.nonce, o);
  o += NONCE_LENGTH;
  out.set(kc, o);
  o += 32;
  out[o++] = i.signingKey.length >> 8;
  out[o++] = i.signingKey.length & 0xff;
  out.set(i.signingKey, o);
  if (st) out.set(st, o + i.signingKey.length);
  return out;
}

/** REPORT_DATA (64 bytes) for the given role and inputs. */
export async function reportData(i: ReportDataInput): Promise<Uint8Array> {
  return digest('SHA-512', await reportDataPreimage(i));
}

/** The 32-byte nonce a worker's GPU evidence must carry, derived from its CPU REPORT_DATA. */
export async function gpuNonceFor(cpuReportData: Uint8Array): Promise<Uint8Array> {
  if (cpuReportData.length !== REPORT_DATA_LENGTH) throw protocolError('BINDING_BAD_INPUT', 'REPORT_DATA must be 64 bytes');
  const label = labelled('gm/v1 gpu-nonce');
  const pre = new Uint8Array(label.length + REPORT_DATA_LENGTH);
  pre.set(label);
  pre.set(cpuReportData, label.length);
  return digest('SHA-256', pre);
}
