/**
 * SEV-SNP verification cost (issue 2 "Speed"): the median time of verifySevSnp on a real report (Azure Genoa,
 * pinned chain) with a warm chain cache and with a cold one, against the floor of one bare ECDSA P-384 SHA-384
 * verify of the same report bytes with node:crypto. Targets: warm ≤ 1.5 × floor, cold ≤ 3 × floor.
 */
import { createPublicKey, verify } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseReport, signatureP1363 } from '../attestation/sevsnp/abi.ts';
import { clearSnpCaches, verifySevSnp } from '../attestation/sevsnp/index.ts';
import { loadTrustStore } from '../attestation/trust.ts';
import { parseCertificate } from '../attestation/x509/cert.ts';
import { certificatesFrom } from '../attestation/x509/pem.ts';
import { TRUST_DIR, VECTORS_DIR } from '../test/vectors.ts';
import { type BenchRow, atMost, medianUs } from './harness.ts';

export const title = 'AMD SEV-SNP report verification';

export async function run(): Promise<BenchRow[]> {
  const report = new Uint8Array(readFileSync(join(VECTORS_DIR, 'sev-snp/azure-genoa/genoa-hcl-snp-report.bin')));
  const vcek = new Uint8Array(readFileSync(join(VECTORS_DIR, 'sev-snp/azure-genoa/vcek-genoa.pem')));
  const trust = await loadTrustStore(TRUST_DIR, fsp);
  const now = new Date('2026-01-01T00:00:00Z');
  const options = { now, trust, vcek, policy: null };

  // Floor: one bare verify over the same signed bytes, the key object made once.
  const leaf = parseCertificate(certificatesFrom(vcek)[0]!);
  const key = createPublicKey({ key: Buffer.from(leaf.spki.raw), format: 'der', type: 'spki' });
  const parsed = parseReport(report);
  const data = parsed.signedBytes;
  const sig = signatureP1363(parsed);
  if (!verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig)) throw new Error('floor: signature does not verify');
  const floor = await medianUs(() => verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig), 400, 50);

  await verifySevSnp(report, options);
  const warm = await medianUs(() => verifySevSnp(report, options), 400, 50);
  const cold = await medianUs(async () => {
    clearSnpCaches();
    await verifySevSnp(report, options);
  }, 100, 10);

  return [
    atMost('verifySevSnp, warm chain cache', warm, 'µs', 'node:crypto ECDSA P-384 verify', floor, 1.5),
    atMost('verifySevSnp, cold chain (ARK/ASK/VCEK RSA-PSS verified)', cold, 'µs', 'node:crypto ECDSA P-384 verify', floor, 3,
      'imported CryptoKeys stay cached across runs (x509 key cache); the chain signatures are re-verified'),
  ];
}
