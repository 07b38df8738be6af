/**
 * How a quote or report was written to a file: raw bytes, hex (with or without `0x`), base64, or one of the JSON
 * envelopes real tools emit. Each candidate decoding is tried explicitly and kept only when the decoded bytes have
 * the expected structure's header (TDX quote header, SEV-SNP ATTESTATION_REPORT, Azure HCL "HCLA"); the result names
 * the encoding so the verification report can state it. Nothing matching is a usage error that names every format
 * tried, never a parser error about bytes that were text.
 *
 * Envelopes (field names as the tools write them):
 * - Intel Trust Authority CLI `trustauthority-cli evidence --tdx` (the output on GCP TDX VMs):
 *   `{"tdx":{"quote":"<base64>","runtime_data":...}}`;
 * - dstack guest agent GetQuote response: `{"quote":"<hex>","event_log":"...",...}`;
 * - trustee's attestation-agent TDX evidence: `{"quote":"<base64>","cc_eventlog":...}` (any object with `quote`).
 * No JSON envelope of an SEV-SNP report is read: the tools that wrap one (go-sev-guest protojson) keep parsed fields,
 * not the signed bytes.
 *
 * abi layer: detection is parsing. Header checks here only recognise a structure; the parsers still decide validity.
 */
import { fromBase64, fromHex } from './bytes.ts';
import { configError } from './errors.ts';
import type { CheckRow, VerificationReport } from './report.ts';

export type EvidenceKind = 'tdx-quote' | 'snp-report';

export interface DecodedEvidence {
  readonly bytes: Uint8Array;
  /** The file encoding, e.g. `raw binary`, `hex with 0x prefix`, `base64 in JSON {"tdx":{"quote"}} (Intel Trust Authority CLI)`. */
  readonly encoding: string;
  /** Which structure the header matched (e.g. `TDX quote v4`, `Azure HCL report`). */
  readonly structure: string;
}

interface Shape {
  readonly name: (b: Uint8Array) => string;
  readonly matches: (b: Uint8Array) => boolean;
}

const u16 = (b: Uint8Array, o: number) => b[o]! | (b[o + 1]! << 8);
const u32 = (b: Uint8Array, o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;

/** Intel TDX DCAP quote header (A.3.1): version 4 or 5, attestation key type 2/3, TEE type 0x81 (TDX) or 0 (SGX). */
const TDX_QUOTE: Shape = {
  matches: (b) => b.length >= 48 && (u16(b, 0) === 4 || u16(b, 0) === 5) && (u16(b, 2) === 2 || u16(b, 2) === 3) && (u32(b, 4) === 0x81 || u32(b, 4) === 0),
  name: (b) => `${u32(b, 4) === 0x81 ? 'TDX' : 'SGX'} quote v${u16(b, 0)}`,
};

/** SEV-SNP ATTESTATION_REPORT (SNP ABI Table 23): VERSION 2..5 at 0x00, SIGNATURE_ALGO 1 at 0x34. */
const SNP_REPORT: Shape = {
  matches: (b) => b.length >= 0x4a0 && u32(b, 0) >= 2 && u32(b, 0) <= 5 && u32(b, 0x34) === 1,
  name: (b) => `SEV-SNP report v${u32(b, 0)}`,
};

/** Azure HCL report (the vTPM NV index 0x01400001): the ASCII signature "HCLA" first. */
const AZURE_HCL: Shape = {
  matches: (b) => b.length >= 4 && b[0] === 0x48 && b[1] === 0x43 && b[2] === 0x4c && b[3] === 0x41,
  name: () => 'Azure HCL report',
};

const SHAPES: Record<EvidenceKind, readonly Shape[]> = { 'tdx-quote': [TDX_QUOTE], 'snp-report': [SNP_REPORT, AZURE_HCL] };
const KIND_NAME: Record<EvidenceKind, string> = { 'tdx-quote': 'a TDX quote', 'snp-report': 'an SEV-SNP report or Azure HCL report' };

interface Envelope {
  readonly name: string;
  readonly pick: (doc: Record<string, unknown>) => unknown;
}

const ENVELOPES: Record<EvidenceKind, readonly Envelope[]> = {
  'tdx-quote': [
    { name: 'JSON {"tdx":{"quote"}} (Intel Trust Authority CLI)', pick: (d) => (isObject(d.tdx) ? d.tdx.quote : undefined) },
    { name: 'JSON {"quote","event_log"} (dstack)', pick: (d) => ('event_log' in d ? d.quote : undefined) },
    { name: 'JSON {"quote"} (trustee attestation agent)', pick: (d) => d.quote },
  ],
  'snp-report': [],
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Text encodings of a string, each tried in turn. */
function textCandidates(text: string): { encoding: string; bytes: Uint8Array }[] {
  const s = text.replace(/\s+/g, '');
  const out: { encoding: string; bytes: Uint8Array }[] = [];
  if (s.length === 0) return out;
  if (/^0[xX](?:[0-9a-fA-F]{2})+$/.test(s)) out.push({ encoding: 'hex with 0x prefix', bytes: fromHex(s.slice(2)) });
  else if (/^(?:[0-9a-fA-F]{2})+$/.test(s)) out.push({ encoding: 'hex', bytes: fromHex(s) });
  if (s.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(s)) out.push({ encoding: 'base64', bytes: fromBase64(s) });
  else if (/^[A-Za-z0-9_-]+={0,2}$/.test(s) && s.length % 4 !== 1) out.push({ encoding: 'base64url', bytes: fromBase64(s) });
  return out;
}

/** Printable ASCII and whitespace only: the file is text, never raw structure bytes. */
function isText(b: Uint8Array): boolean {
  for (const x of b) if (!(x === 0x09 || x === 0x0a || x === 0x0d || (x >= 0x20 && x < 0x7f))) return false;
  return b.length > 0;
}

const TRIED = 'raw binary, hex, hex with 0x prefix, base64, base64url';

/**
 * Decodes a file holding `kind`. Throws EVIDENCE_FORMAT_UNKNOWN (a configuration error: the input is not something
 * gm reads) naming the formats tried; `what` names the file in the message.
 */
export function decodeEvidence(file: Uint8Array, kind: EvidenceKind, what: string): DecodedEvidence {
  const shapes = SHAPES[kind];
  const shapeOf = (b: Uint8Array) => shapes.find((s) => s.matches(b));
  const raw = shapeOf(file);
  if (raw) return { bytes: file, encoding: 'raw binary', structure: raw.name(file) };
  const envelopes = ENVELOPES[kind];
  const tried = [TRIED, ...envelopes.map((e) => e.name)].join(', ');
  const unknown = (why: string) => configError('EVIDENCE_FORMAT_UNKNOWN', `${what}: ${why}; it is not ${KIND_NAME[kind]} in any format gm reads (tried: ${tried})`);
  if (!isText(file)) throw unknown('binary data without the expected header');
  const text = new TextDecoder().decode(file).trim();
  if (text.startsWith('{') && envelopes.length === 0) throw unknown('JSON');
  if (text.startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      throw unknown('JSON that does not parse');
    }
    if (!isObject(doc)) throw unknown('JSON that is not an object');
    for (const env of envelopes) {
      const v = env.pick(doc);
      if (v === undefined) continue;
      if (typeof v !== 'string') throw unknown(`${env.name}: the field is not a string`);
      for (const c of textCandidates(v)) {
        const shape = shapeOf(c.bytes);
        if (shape) return { bytes: c.bytes, encoding: `${c.encoding} in ${env.name}`, structure: shape.name(c.bytes) };
      }
      throw unknown(`${env.name}: the field decodes to no recognised header`);
    }
    throw unknown(`JSON with none of the known envelope fields (keys: ${Object.keys(doc).slice(0, 8).join(', ') || 'none'})`);
  }
  for (const c of textCandidates(text)) {
    const shape = shapeOf(c.bytes);
    if (shape) return { bytes: c.bytes, encoding: c.encoding, structure: shape.name(c.bytes) };
  }
  throw unknown('text that decodes to no recognised header');
}

/** The report with a first row stating how the input was decoded (`<prefix>.input`). */
export function withInputRow(report: VerificationReport, decoded: DecodedEvidence, prefix: string): VerificationReport {
  const row: CheckRow = { id: `${prefix}.input`, status: 'pass', what: 'input format detected', detail: `${decoded.structure}, ${decoded.encoding}` };
  return { ...report, checks: [row, ...report.checks] };
}
