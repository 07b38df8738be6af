/**
 * The evidence bundle (docs/design.md §4): what an enclave or a worker hands to whoever must trust it. CBOR (RFC 8949)
 * encoded deterministically (§4.2.1: definite lengths, shortest integer forms, map keys sorted by their encoded
 * bytes), with a JSON view (byte strings as base64) for people and logs.
 *
 * ```
 * { v: 1, platform: "sev-snp" | "tdx" | "sim-sev-snp" | "sim-tdx",
 *   evidence,            // SEV-SNP ATTESTATION_REPORT or TDX quote bytes
 *   certs,               // DER, leaf first (SNP: VCEK/VLEK, ASK, ARK; TDX: normally empty, the PCK chain is in the quote)
 *   collateral,          // vendor collateral as served (CRLs, TCB info, QE identity); re-verified byte for byte
 *   gpu?: [{ arch, evidence, certs, ccMode }],  // NVIDIA SPDM GET_MEASUREMENTS transcript + device chain (leaf first)
 *   keys: { ohttp, receipt } | { ohttp, signing },   // enclave: receipt key; worker: offer-signing key
 *   settings?: { allowSimWorkers, workerPolicy, openAccess, ledger },   // enclave only, bound in REPORT_DATA
 *   models?,             // worker only: its model manifest bytes (protocol/model-identity.ts), bound in REPORT_DATA
 *   nonce,               // 32 bytes (32 zero bytes for the boot bundle)
 *   issuedAt }           // Unix time in milliseconds when the evidence was produced
 * ```
 *
 * Decoding is strict (CONTRIBUTING.md, convention 4): an unknown version, a missing field, an unknown field or a wrong type is a
 * `protocol` error with code BUNDLE_MALFORMED (or BUNDLE_VERSION). No trust decision is made here.
 * Runtime-agnostic: no node: imports.
 */
import { Decoder, Encoder } from 'cbor-x';
import { fromBase64, toBase64 } from './bytes.ts';
import { protocolError } from './errors.ts';

export const BUNDLE_VERSION = 1;
export const PLATFORMS = ['sev-snp', 'tdx', 'sim-sev-snp', 'sim-tdx'] as const;
export type BundlePlatform = (typeof PLATFORMS)[number];
/** Architectures as nvtrust/nvattest name them. */
export const GPU_ARCHS = ['HOPPER', 'BLACKWELL'] as const;
export type GpuArch = (typeof GPU_ARCHS)[number];
export const CC_MODES = ['on', 'off', 'devtools'] as const;
export type GpuCcMode = (typeof CC_MODES)[number];

/** Collateral as the vendors serve it. Every field optional: which ones a platform needs is the verifier's call. */
export interface BundleCollateral {
  /** DER CRLs (SNP: ARK-signed CRL; TDX: PCK CRL, Root CA CRL). */
  readonly crls?: readonly Uint8Array[];
  /** TDX: TCB info JSON as served by Intel PCS (with its signature). */
  readonly tcbInfo?: Uint8Array;
  /** TDX: QE identity JSON as served by Intel PCS. */
  readonly qeIdentity?: Uint8Array;
  /** DER certificates that sign collateral (e.g. the TCB signing chain), leaf first. */
  readonly chain?: readonly Uint8Array[];
}

export interface GpuEvidence {
  readonly arch: GpuArch;
  /** SPDM GET_MEASUREMENTS response (the GPU attestation report). */
  readonly evidence: Uint8Array;
  /** Device certificate chain, DER, leaf first. */
  readonly certs: readonly Uint8Array[];
  /**
   * CC mode as the worker read it from NVML inside its attested CVM (the Hopper SPDM report has no CC-mode field):
   * trustworthy because the worker's measured code produced it; the worker refuses to register otherwise.
   */
  readonly ccMode: GpuCcMode;
}

/** Public keys bound in REPORT_DATA. Exactly one of `receipt` (enclave) and `signing` (worker) is present. */
export interface BundleKeys {
  /** Encoded OHTTP key configurations (`application/ohttp-keys`, RFC 9458 §3). */
  readonly ohttp: Uint8Array;
  readonly receipt?: Uint8Array;
  readonly signing?: Uint8Array;
}

export const LEDGER_MODES = ['none', 'memory', 'file', 'postgres'] as const;
export type LedgerMode = (typeof LEDGER_MODES)[number];

/**
 * An enclave's trust-relevant settings (docs/protocol.md §12.3), bound in its REPORT_DATA so that what a client
 * reads here is what the attested code runs with.
 */
export interface EnclaveSettings {
  /** Whether workers with simulated evidence are admitted (`--allow-sim-workers`). */
  readonly allowSimWorkers: boolean;
  /** SHA-256 of the effective worker policy (enclave/policy.ts workerPolicyDigest). */
  readonly workerPolicy: Uint8Array;
  /** Whether requests without an API key are served, charged to a house account (`--open-access`). */
  readonly openAccess: boolean;
  /** Where receipts are kept: no market ledger, a ledger in memory, a ledger file, or a shared PostgreSQL ledger. */
  readonly ledger: LedgerMode;
}

export interface EvidenceBundle {
  readonly v: typeof BUNDLE_VERSION;
  readonly platform: BundlePlatform;
  readonly evidence: Uint8Array;
  readonly certs: readonly Uint8Array[];
  readonly collateral: BundleCollateral;
  readonly gpu?: readonly GpuEvidence[];
  readonly keys: BundleKeys;
  readonly settings?: EnclaveSettings;
  /** Worker only: the deterministic CBOR model manifest it serves (decoded and checked by protocol/model-identity.ts). */
  readonly models?: Uint8Array;
  readonly nonce: Uint8Array;
  readonly issuedAt: number;
}

export const isSimPlatform = (p: BundlePlatform): boolean => p === 'sim-sev-snp' || p === 'sim-tdx';

// Plain CBOR maps and byte strings only: no records extension, no typed-array tags, shortest map headers.
const encoder = new Encoder({ useRecords: false, tagUint8Array: false, variableMapSize: true } as ConstructorParameters<typeof Encoder>[0]);
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false } as ConstructorParameters<typeof Decoder>[0]);

/** RFC 8949 §4.2.1 key order for text keys: shorter first, then bytewise. */
function canonical(v: unknown): unknown {
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v)) return v.map(canonical);
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined);
    keys.sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = canonical((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

export function encodeBundle(b: EvidenceBundle): Uint8Array {
  // Validate what we emit with the same rules we accept: an encoder must not produce what a decoder refuses.
  const checked = bundleFromObject(b as unknown as Record<string, unknown>, 'bytes');
  return new Uint8Array(encoder.encode(canonical(checked)));
}

/** The exact bytes of `settings` bound in REPORT_DATA: their deterministic CBOR map, as inside the bundle. */
export function encodeEnclaveSettings(s: EnclaveSettings): Uint8Array {
  return new Uint8Array(encoder.encode(canonical(settingsFrom(s, 'bytes'))));
}

export function decodeBundle(bytes: Uint8Array): EvidenceBundle {
  let obj: unknown;
  try {
    obj = decoder.decode(bytes);
  } catch (e) {
    throw malformed('is not valid CBOR', e);
  }
  const b = bundleFromObject(obj, 'bytes');
  // Deterministic encoding is part of the format: a re-encoding must give the same bytes (no trailing data,
  // no alternative encodings that two parties could disagree about).
  const again = new Uint8Array(encoder.encode(canonical(b)));
  if (again.length !== bytes.length || !again.every((x, i) => x === bytes[i])) throw malformed('is not in deterministic CBOR encoding');
  return b;
}

/** The JSON view: byte strings as standard base64. */
export function bundleToJson(b: EvidenceBundle): Record<string, unknown> {
  const j = (v: unknown): unknown => {
    if (v instanceof Uint8Array) return toBase64(v);
    if (Array.isArray(v)) return v.map(j);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, j(x)]));
    return v;
  };
  return j(canonical(b)) as Record<string, unknown>;
}

export function bundleFromJson(json: unknown): EvidenceBundle {
  return bundleFromObject(json, 'base64');
}

function malformed(what: string, cause?: unknown) {
  return protocolError('BUNDLE_MALFORMED', `evidence bundle ${what}`, cause === undefined ? undefined : { cause });
}

type ByteForm = 'bytes' | 'base64';

class Reader {
  readonly #o: Record<string, unknown>;
  readonly #where: string;
  readonly #form: ByteForm;
  readonly #seen = new Set<string>();
  constructor(o: unknown, where: string, form: ByteForm) {
    if (o === null || typeof o !== 'object' || Array.isArray(o) || o instanceof Uint8Array) throw malformed(`${where} must be a map`);
    this.#o = o as Record<string, unknown>;
    this.#where = where;
    this.#form = form;
  }
  has(k: string): boolean {
    return this.#o[k] !== undefined;
  }
  raw(k: string, required = true): unknown {
    this.#seen.add(k);
    const v = this.#o[k];
    if (v === undefined && required) throw malformed(`${this.#where}: field "${k}" is missing`);
    return v;
  }
  bytes(k: string, len?: number): Uint8Array;
  bytes(k: string, len: number | undefined, optional: 'optional'): Uint8Array | undefined;
  bytes(k: string, len?: number, optional?: 'optional'): Uint8Array | undefined {
    const v = this.raw(k, !optional);
    if (v === undefined) return undefined;
    return this.#toBytes(v, `${this.#where}.${k}`, len);
  }
  bytesList(k: string, optional?: 'optional'): Uint8Array[] | undefined {
    const v = this.raw(k, !optional);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw malformed(`${this.#where}.${k} must be an array of byte strings`);
    return v.map((x, i) => this.#toBytes(x, `${this.#where}.${k}[${i}]`));
  }
  #toBytes(v: unknown, where: string, len?: number): Uint8Array {
    let b: Uint8Array;
    if (this.#form === 'bytes') {
      if (!(v instanceof Uint8Array)) throw malformed(`${where} must be a byte string`);
      b = new Uint8Array(v); // own copy: cbor-x may hand out views into its buffer
    } else {
      if (typeof v !== 'string') throw malformed(`${where} must be a base64 string`);
      b = fromBase64(v, where);
    }
    if (len !== undefined && b.length !== len) throw malformed(`${where} must be ${len} bytes (got ${b.length})`);
    return b;
  }
  done(): void {
    for (const k of Object.keys(this.#o)) if (!this.#seen.has(k)) throw malformed(`${this.#where}: unknown field "${k}"`);
  }
}

function bundleFromObject(obj: unknown, form: ByteForm): EvidenceBundle {
  const r = new Reader(obj, 'bundle', form);
  const v = r.raw('v');
  if (v !== BUNDLE_VERSION) throw protocolError('BUNDLE_VERSION', `evidence bundle version ${String(v)} is not supported (expected ${BUNDLE_VERSION})`);
  const platform = r.raw('platform');
  if (typeof platform !== 'string' || !(PLATFORMS as readonly string[]).includes(platform)) throw malformed(`platform must be one of ${PLATFORMS.join(', ')}`);
  const evidence = r.bytes('evidence');
  if (evidence.length === 0) throw malformed('evidence is empty');
  const certs = r.bytesList('certs')!;

  const c = new Reader(r.raw('collateral'), 'bundle.collateral', form);
  const collateral: { -readonly [K in keyof BundleCollateral]: BundleCollateral[K] } = {};
  const crls = c.bytesList('crls', 'optional');
  if (crls) collateral.crls = crls;
  const tcbInfo = c.bytes('tcbInfo', undefined, 'optional');
  if (tcbInfo) collateral.tcbInfo = tcbInfo;
  const qeIdentity = c.bytes('qeIdentity', undefined, 'optional');
  if (qeIdentity) collateral.qeIdentity = qeIdentity;
  const chain = c.bytesList('chain', 'optional');
  if (chain) collateral.chain = chain;
  c.done();

  let gpu: GpuEvidence[] | undefined;
  const g = r.raw('gpu', false);
  if (g !== undefined) {
    if (!Array.isArray(g) || g.length === 0) throw malformed('gpu must be a non-empty array when present');
    gpu = g.map((x, i) => {
      const gr = new Reader(x, `bundle.gpu[${i}]`, form);
      const arch = gr.raw('arch');
      if (typeof arch !== 'string' || !(GPU_ARCHS as readonly string[]).includes(arch)) throw malformed(`gpu[${i}].arch must be one of ${GPU_ARCHS.join(', ')}`);
      const ev = gr.bytes('evidence');
      const gc = gr.bytesList('certs')!;
      const cc = gr.raw('ccMode');
      if (typeof cc !== 'string' || !(CC_MODES as readonly string[]).includes(cc)) throw malformed(`gpu[${i}].ccMode must be one of ${CC_MODES.join(', ')}`);
      gr.done();
      return { arch: arch as GpuArch, evidence: ev, certs: gc, ccMode: cc as GpuCcMode };
    });
  }

  const k = new Reader(r.raw('keys'), 'bundle.keys', form);
  const ohttp = k.bytes('ohttp');
  const receipt = k.bytes('receipt', undefined, 'optional');
  const signing = k.bytes('signing', undefined, 'optional');
  k.done();
  if ((receipt === undefined) === (signing === undefined)) throw malformed('keys must hold exactly one of "receipt" (enclave) and "signing" (worker)');
  const keys: BundleKeys = receipt ? { ohttp, receipt } : { ohttp, signing: signing! };
  const rawSettings = r.raw('settings', false);
  if (rawSettings !== undefined && !receipt) throw malformed('settings belong to enclave bundles only');
  const settings = rawSettings === undefined ? undefined : settingsFrom(rawSettings, form);
  const models = r.bytes('models', undefined, 'optional');
  if (models !== undefined && !signing) throw malformed('models belong to worker bundles only');
  if (models !== undefined && (models.length === 0 || models.length > 65_536)) throw malformed('models must be 1..65536 bytes');

  const nonce = r.bytes('nonce', 32);
  const issuedAt = r.raw('issuedAt');
  if (typeof issuedAt !== 'number' || !Number.isSafeInteger(issuedAt) || issuedAt < 0) throw malformed('issuedAt must be a non-negative integer (Unix milliseconds)');
  r.done();
  return { v: BUNDLE_VERSION, platform: platform as BundlePlatform, evidence, certs, collateral, ...(gpu ? { gpu } : {}), keys, ...(settings ? { settings } : {}), ...(models ? { models } : {}), nonce, issuedAt };
}

function settingsFrom(obj: unknown, form: ByteForm): EnclaveSettings {
  const r = new Reader(obj, 'bundle.settings', form);
  const flag = (k: string): boolean => {
    const v = r.raw(k);
    if (typeof v !== 'boolean') throw malformed(`settings.${k} must be a boolean`);
    return v;
  };
  const allowSimWorkers = flag('allowSimWorkers');
  const workerPolicy = r.bytes('workerPolicy', 32);
  const openAccess = flag('openAccess');
  const ledger = r.raw('ledger');
  if (typeof ledger !== 'string' || !(LEDGER_MODES as readonly string[]).includes(ledger)) throw malformed(`settings.ledger must be one of ${LEDGER_MODES.join(', ')}`);
  r.done();
  return { allowSimWorkers, workerPolicy, openAccess, ledger: ledger as LedgerMode };
}
