/**
 * SEV-SNP verification cost: the median time of verifySevSnp on a real report (Azure Genoa,
 * pinned chain) with a warm chain cache and with a cold one, against the floor of one bare ECDSA P-384 SHA-384
 * verify of the same report bytes with node:crypto. Targets: warm ≤ 1.5 × floor, cold ≤ 3 × floor, for the
 * node:crypto report-signature verifier `gm verify snp` uses; the WebCrypto default is printed beside them.
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
import { type BenchRow, atMost, interleavedMedians } from './harness.ts';
import { nodeP384Verifier } from '../cli/node-verifiers.ts';

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
  const bare = () => verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig);

  // Floor and values timed in alternating blocks (as the TDX bench), so load from other processes on a shared
  // machine falls on all of them alike. Targets apply to the node:crypto report-signature verifier, as `gm verify snp`
  // (and any Node caller) runs it; the runtime-agnostic WebCrypto default is printed beside it.
  const node = { ...options, p384Verifier: nodeP384Verifier };
  await verifySevSnp(report, options);
  await verifySevSnp(report, node);
  const [floor, warmNode, warm] = (await interleavedMedians([bare, () => verifySevSnp(report, node), () => verifySevSnp(report, options)], 16, 25)) as [number, number, number];
  const cold = (o: typeof options) => async () => {
    clearSnpCaches();
    await verifySevSnp(report, o);
  };
  const [floorCold, coldNode, coldWeb] = (await interleavedMedians([bare, cold(node), cold(options)], 10, 10)) as [number, number, number];

  return [
    atMost('verifySevSnp, warm chain cache, node:crypto report-signature verifier (as gm verify snp runs it)', warmNode, 'µs', 'node:crypto ECDSA P-384 verify', floor, 1.5),
    { ...atMost('verifySevSnp, warm chain cache, WebCrypto default (browser-portable)', warm, 'µs', 'node:crypto ECDSA P-384 verify', floor, Infinity), target: 'none (informational)', ok: true, note: 'WebCrypto adds a thread-pool round trip per verify' },
    atMost('verifySevSnp, cold chain (ARK/ASK/VCEK RSA-PSS verified), node:crypto report verifier', coldNode, 'µs', 'node:crypto ECDSA P-384 verify', floorCold, 3,
      'imported CryptoKeys stay cached across runs (x509 key cache); the chain signatures are re-verified'),
    { ...atMost('verifySevSnp, cold chain, WebCrypto default', coldWeb, 'µs', 'node:crypto ECDSA P-384 verify', floorCold, Infinity), target: 'none (informational)', ok: true },
  ];
}
