/** Renders a verification report as a readable table (default) or JSON (`--json`). */
import type { VerificationReport } from '../attestation/report.ts';

const MARK = { pass: 'PASS', fail: 'FAIL', skip: 'SKIP' } as const;

export function formatReport(report: VerificationReport, claims?: Record<string, unknown>): string {
  const lines: string[] = [];
  lines.push(`${report.subject}: ${report.verified ? 'VERIFIED' : 'REJECTED'}`);
  const w = Math.max(8, ...report.checks.map((c) => c.id.length));
  for (const c of report.checks) {
    lines.push(`  ${MARK[c.status]}  ${c.id.padEnd(w)}  ${c.what}${c.against ? ` [against: ${c.against}]` : ''}`);
    if (c.detail) lines.push(`        ${' '.repeat(w)}  ${c.status === 'fail' ? `${c.code}: ` : ''}${c.detail}`);
  }
  if (claims) {
    lines.push('claims:');
    const kw = Math.max(...Object.keys(claims).map((k) => k.length));
    for (const [k, v] of Object.entries(claims)) lines.push(`  ${k.padEnd(kw)}  ${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  return `${lines.join('\n')}\n`;
}

export function reportJson(report: VerificationReport, claims?: unknown): string {
  return `${JSON.stringify({ ...report, claims }, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : typeof v === 'bigint' ? v.toString() : v), 2)}\n`;
}
