/** Evidence file encodings: every candidate is tried explicitly, stated, and an unknown file names what was tried. */
import { describe, expect, it } from 'vitest';
import { hex, toBase64 } from './bytes.ts';
import { decodeEvidence, withInputRow } from './encoding.ts';
import { isGmError } from './errors.ts';
import { vector } from '../test/vectors.ts';

const local = (rel: string) => vector(rel);
const text = (s: string) => new TextEncoder().encode(s);
const gcp = JSON.parse(new TextDecoder().decode(local('tdx/teekit/tdx-v4-gcp.json'))) as { tdx: { quote: string } };
const quote = Uint8Array.from(atob(gcp.tdx.quote), (c) => c.charCodeAt(0));

function refused(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(isGmError(e, 'EVIDENCE_FORMAT_UNKNOWN')).toBe(true);
    expect((e as { kind: string }).kind).toBe('config');
    return (e as Error).message;
  }
  throw new Error('expected EVIDENCE_FORMAT_UNKNOWN');
}

describe('decodeEvidence (TDX quotes, real samples)', () => {
  it('reads each real file and names its encoding', () => {
    const cases: [string, string][] = [
      ['tdx/teekit/tdx-v4-gcp.json', 'base64 in JSON {"tdx":{"quote"}} (Intel Trust Authority CLI)'],
      ['tdx/teekit/tdx-v4-phala.hex', 'hex with 0x prefix'],
      ['tdx/teekit/tdx-v4-tappd.hex', 'hex'],
      ['tdx/teekit/tdx-v4-azure', 'base64'],
    ];
    for (const [f, encoding] of cases) {
      const d = decodeEvidence(local(f), 'tdx-quote', f);
      expect(d.encoding, f).toBe(encoding);
      expect(d.structure).toBe('TDX quote v4');
      expect(d.bytes[0]).toBe(4);
    }
    expect(hex(decodeEvidence(local('tdx/teekit/tdx-v4-phala.hex'), 'tdx-quote', 'a').bytes)).toBe(hex(Uint8Array.from(Buffer.from(new TextDecoder().decode(local('tdx/teekit/tdx-v4-phala.hex')).trim().slice(2), 'hex'))));
  });

  it('raw bytes stay raw; envelopes built from the tools\' documented shapes decode to the same bytes', () => {
    expect(decodeEvidence(quote, 'tdx-quote', 'q').encoding).toBe('raw binary');
    const dstack = text(JSON.stringify({ quote: hex(quote), event_log: '[]', report_data: '00' }));
    const d = decodeEvidence(dstack, 'tdx-quote', 'q');
    expect(d.encoding).toBe('hex in JSON {"quote","event_log"} (dstack)');
    expect(hex(d.bytes)).toBe(hex(quote));
    const trustee = decodeEvidence(text(JSON.stringify({ cc_eventlog: null, quote: toBase64(quote) })), 'tdx-quote', 'q');
    expect(trustee.encoding).toBe('base64 in JSON {"quote"} (trustee attestation agent)');
    expect(decodeEvidence(text(`\n${hex(quote).replace(/(.{64})/g, '$1\n')}\n`), 'tdx-quote', 'q').encoding).toBe('hex');
  });

  it('refuses what it cannot read as a usage error naming every format tried', () => {
    // "0x" read as a little-endian u16 is 30768: the old failure this replaces.
    const m = refused(() => decodeEvidence(text('0x1234abcd'), 'tdx-quote', 'q.hex'));
    expect(m).toContain('q.hex');
    for (const f of ['raw binary', 'hex with 0x prefix', 'base64', 'JSON {"tdx":{"quote"}}', '(dstack)']) expect(m).toContain(f);
    refused(() => decodeEvidence(new Uint8Array([3, 0, 2, 0, 0, 0, 0, 0, 0xff]), 'tdx-quote', 'q'));
    expect(refused(() => decodeEvidence(text('{"tdx":{"quote":"AAAA"}}'), 'tdx-quote', 'q'))).toContain('decodes to no recognised header');
    expect(refused(() => decodeEvidence(text('{"evidence":"x"}'), 'tdx-quote', 'q'))).toContain('keys: evidence');
    expect(refused(() => decodeEvidence(text('{"quote":42}'), 'tdx-quote', 'q'))).toContain('not a string');
    expect(refused(() => decodeEvidence(text('{not json'), 'tdx-quote', 'q'))).toContain('does not parse');
    // A TDX quote is not an SEV-SNP report, whatever its encoding.
    expect(refused(() => decodeEvidence(quote, 'snp-report', 'r'))).toContain('SEV-SNP report or Azure HCL report');
  });

  it('SEV-SNP: an Azure HCL report and a bare report are recognised raw and as text', () => {
    const hcl = local('sev-snp/trustee-azure/hcl-report-milan.bin');
    expect(decodeEvidence(hcl, 'snp-report', 'h').structure).toBe('Azure HCL report');
    const report = hcl.slice(0x20, 0x20 + 0x4a0);
    expect(decodeEvidence(report, 'snp-report', 'r').structure).toBe('SEV-SNP report v2');
    expect(decodeEvidence(text(toBase64(hcl)), 'snp-report', 'h').encoding).toBe('base64');
    expect(decodeEvidence(text(`0x${hex(report)}`), 'snp-report', 'r').encoding).toBe('hex with 0x prefix');
    expect(refused(() => decodeEvidence(text('{"report":"00"}'), 'snp-report', 'r'))).toContain('JSON');
  });

  it('withInputRow puts the detected format first', () => {
    const d = decodeEvidence(local('tdx/teekit/tdx-v4-azure'), 'tdx-quote', 'a');
    const r = withInputRow({ subject: 's', verified: true, checks: [{ id: 'x', status: 'pass', what: 'w' }] }, d, 'tdx');
    expect(r.checks[0]).toEqual({ id: 'tdx.input', status: 'pass', what: 'input format detected', detail: 'TDX quote v4, base64' });
    expect(r.checks[1]!.id).toBe('x');
  });
});
