/**
 * GPU evidence as workers emit it. Two forms:
 * - nvtrust / `nvattest` JSON: `[{ "arch": "HOPPER", "certificate": base64(PEM chain), "evidence": base64(report) }, ...]`
 *   (nvtrust `ppcie-verifier-sdk-cpp/tests/data/gpu_evidence.json`). gm's worker may add `"cc_mode": "ON" | "OFF" |
 *   "DEVTOOLS"`, which it reads from NVML inside its attested CVM: the Hopper SPDM report carries no CC-mode field.
 * - a raw report (binary or hex) and its PEM chain (nvtrust `hopperAttestationReport.txt` + `hopperCertChain.txt`).
 *
 * abi layer: decoding only; the certificates and report are parsed here, never trusted here.
 */
import { fromBase64, toBase64 } from '../bytes.ts';
import { GmError, protocolError } from '../errors.ts';
import { type Certificate, parseCertificate } from '../x509/cert.ts';
import { pemDecodeAll } from '../x509/pem.ts';
import { type GpuAttestationReport, parseGpuAttestationReport } from './spdm.ts';

export type CcModeDeclared = 'on' | 'off' | 'devtools';

export interface GpuEvidenceItem {
  /** Position in the evidence list (0-based): the name the verifier reports ("GPU 3"). */
  readonly index: number;
  /** As the evidence names it, upper-cased (HOPPER, BLACKWELL). */
  readonly arch: string;
  readonly report: GpuAttestationReport;
  /** Leaf first, as the GPU driver returns it (the root may be included). */
  readonly chain: readonly Certificate[];
  /** The worker's NVML reading, when it supplied one (not signed by the GPU). */
  readonly ccModeDeclared: CcModeDeclared | undefined;
  /** Unsigned copies nvattest writes beside the report (`driver_version`, `vbios_version`, `nonce`, `version`): verify checks them against the report. */
  readonly declared: { readonly driverVersion?: string; readonly vbiosVersion?: string; readonly nonce?: string; readonly version?: string };
}

const bad = (msg: string, cause?: unknown) => protocolError('NVIDIA_EVIDENCE_INVALID', `GPU evidence: ${msg}`, cause === undefined ? undefined : { cause });

/**
 * Parsed chains by their exact text (PEM, or the base64 of it in the JSON form): a worker presents the same chain
 * on every attestation, and the same object lets verify reuse its warm chain. A pure memo.
 */
const parsedChains = new Map<string, readonly Certificate[]>();

function remember(text: string, chain: readonly Certificate[]): readonly Certificate[] {
  if (parsedChains.size >= 512) parsedChains.clear();
  parsedChains.set(text, chain);
  return chain;
}

function chainFromPem(text: string, where: string): readonly Certificate[] {
  return parsedChains.get(text) ?? remember(text, parseChainPem(text, where));
}

function pemText(b64: string, where: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(fromBase64(b64, `${where} certificate`));
  } catch (e) {
    throw bad(`${where}: certificate is not base64 of PEM text`, e);
  }
}

function parseChainPem(text: string, where: string): Certificate[] {
  let ders: Uint8Array[];
  try {
    ders = pemDecodeAll(text);
  } catch (e) {
    throw bad(`${where}: certificate chain is not PEM`, e);
  }
  return ders.map((d) => parseCertificate(d));
}

const KNOWN_KEYS = new Set(['arch', 'certificate', 'evidence', 'cc_mode', 'driver_version', 'vbios_version', 'nonce', 'version']);

/** A GPU of a JSON evidence list that did not parse: the others are still verified (parseGpuEvidenceList). */
export interface GpuEvidenceFailure {
  readonly index: number;
  /** As the entry names it, when it does. */
  readonly arch: string;
  readonly error: GmError;
}

export function isGpuEvidenceFailure(x: GpuEvidenceItem | GpuEvidenceFailure): x is GpuEvidenceFailure {
  return 'error' in x;
}

/** Parses the nvtrust JSON form; throws on the first GPU that does not parse (parseGpuEvidenceList keeps the others). */
export function parseGpuEvidenceJson(text: string): GpuEvidenceItem[] {
  return parseGpuEvidenceList(text).map((x) => {
    if (isGpuEvidenceFailure(x)) throw x.error;
    return x;
  });
}

/**
 * Parses the nvtrust JSON form GPU by GPU: a document that is not a non-empty JSON array throws, an entry that does
 * not parse becomes a GpuEvidenceFailure in its place, so one bad GPU fails its own rows and not the parsing of the rest.
 */
export function parseGpuEvidenceList(text: string): (GpuEvidenceItem | GpuEvidenceFailure)[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw bad('not JSON', e);
  }
  if (!Array.isArray(doc) || doc.length === 0) throw bad('expected a non-empty JSON array of { arch, certificate, evidence }');
  return doc.map((item: unknown, index) => {
    try {
      return parseItem(item, index);
    } catch (e) {
      const arch = typeof (item as { arch?: unknown } | null)?.arch === 'string' ? (item as { arch: string }).arch.toUpperCase() : 'UNKNOWN';
      return { index, arch, error: e instanceof GmError ? e : bad(`GPU ${index}: ${String(e)}`, e) };
    }
  });
}

function parseItem(item: unknown, index: number): GpuEvidenceItem {
  const where = `GPU ${index}`;
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw bad(`${where}: not an object`);
  const o = item as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN_KEYS.has(k)) throw bad(`${where}: unknown field "${k}"`);
  if (typeof o.arch !== 'string' || typeof o.certificate !== 'string' || typeof o.evidence !== 'string')
    throw bad(`${where}: arch, certificate and evidence must be strings`);
  let ccModeDeclared: CcModeDeclared | undefined;
  if (o.cc_mode !== undefined) {
    const m = typeof o.cc_mode === 'string' ? o.cc_mode.toLowerCase() : '';
    if (m !== 'on' && m !== 'off' && m !== 'devtools') throw bad(`${where}: cc_mode must be ON, OFF or DEVTOOLS`);
    ccModeDeclared = m;
  }
  const declared: { driverVersion?: string; vbiosVersion?: string; nonce?: string; version?: string } = {};
  for (const [k, f] of [['driver_version', 'driverVersion'], ['vbios_version', 'vbiosVersion'], ['nonce', 'nonce'], ['version', 'version']] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw bad(`${where}: ${k} must be a string`);
    declared[f] = v;
  }
  const certificate = o.certificate;
  const chain = parsedChains.get(certificate) ?? remember(certificate, chainFromPem(pemText(certificate, where), where));
  return {
    index,
    arch: o.arch.toUpperCase(),
    report: parseGpuAttestationReport(fromBase64(o.evidence, `${where} evidence`)),
    chain,
    ccModeDeclared,
    declared,
  };
}

/** One GPU from a raw report (bytes) and its PEM chain. */
export function gpuEvidenceFromRaw(report: Uint8Array, chainPem: string, arch = 'HOPPER', ccModeDeclared?: CcModeDeclared): GpuEvidenceItem {
  return { index: 0, arch: arch.toUpperCase(), report: parseGpuAttestationReport(report), chain: chainFromPem(chainPem, 'GPU 0'), ccModeDeclared, declared: {} };
}

/** Encodes items back into the JSON form (the sim and the worker use it). */
export function gpuEvidenceJson(items: readonly { arch: string; certificatePem: string; report: Uint8Array; ccMode?: CcModeDeclared }[]): string {
  return JSON.stringify(items.map((i) => ({
    arch: i.arch,
    certificate: toBase64(new TextEncoder().encode(i.certificatePem)),
    evidence: toBase64(i.report),
    ...(i.ccMode ? { cc_mode: i.ccMode.toUpperCase() } : {}),
  })));
}
