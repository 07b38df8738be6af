/**
 * Intel TDX verification cost: the median time of a full verifyTdx of the real dcap-qvl quote with
 * warm caches (PCK chain, TCB info / QE identity and CRL signatures, and the QE report signature, which is the
 * same in every quote of a platform: all verified once and cached by exact bytes; parsing, dates, revocation
 * lookups, QE binding, TCB matching and policy re-run every call), against the floor of the ECDSA P-256 verifies
 * the warm path really does: 1 (the quote signed by the attestation key), done with node:crypto over the same
 * bytes. Target: ratio ≤ 2.
 */
import { createPublicKey, verify } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseQuote } from '../attestation/tdx/abi.ts';
import { clearTdxCaches, collateralFromDcapQvl, verifyTdx } from '../attestation/tdx/index.ts';
import { parsePckChain } from '../attestation/tdx/pck.ts';
import { loadTrustStore } from '../attestation/trust.ts';
import { nodeEcdsaP256 } from '../cli/node-verifiers.ts';
import { TRUST_DIR, VECTORS_DIR } from '../test/vectors.ts';
import { type BenchRow, atMost, interleavedMedians, medianUs } from './harness.ts';

export const title = 'Intel TDX quote verification';

/** ECDSA P-256 verifies per warm verifyTdx call. */
const WARM_VERIFIES = 1;

export async function run(): Promise<BenchRow[]> {
  const quote = new Uint8Array(readFileSync(join(VECTORS_DIR, 'tdx/dcap-qvl/tdx_quote')));
  const collateral = collateralFromDcapQvl(readFileSync(join(VECTORS_DIR, 'tdx/dcap-qvl/tdx_quote_collateral.json'), 'utf8'));
  const trustStore = await loadTrustStore(TRUST_DIR, fsp);
  const options = { now: new Date('2025-06-25T00:00:00Z'), trustStore, collateral };

  // Floor: the one signature the warm path verifies (the quote signature), same bytes, key object made once.
  const q = parseQuote(quote);
  const pckKey = createPublicKey({ key: Buffer.from(parsePckChain(q.certification.pckCertChain)[0]!.spki.raw), format: 'der', type: 'spki' });
  const attKey = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: Buffer.from(q.attestationKey.subarray(0, 32)).toString('base64url'), y: Buffer.from(q.attestationKey.subarray(32)).toString('base64url') }, format: 'jwk' });
  const pairs = [{ key: attKey, data: q.signedData, sig: q.signature }];
  if (!verify('sha256', q.certification.qeReport.raw, { key: pckKey, dsaEncoding: 'ieee-p1363' }, q.certification.qeReportSignature)) throw new Error('QE report signature');
  if (pairs.length !== WARM_VERIFIES) throw new Error('floor must do as many verifies as the warm path');
  for (const p of pairs) if (!verify('sha256', p.data, { key: p.key, dsaEncoding: 'ieee-p1363' }, p.sig)) throw new Error('floor: signature does not verify');
  const floorOnce = () => {
    for (const p of pairs) verify('sha256', p.data, { key: p.key, dsaEncoding: 'ieee-p1363' }, p.sig);
  };

  const first = await verifyTdx(quote, options);
  if (first.claims.tcbStatus !== 'UpToDate') throw new Error('bench quote is not UpToDate');
  const nodeOptions = { ...options, ecdsaP256: nodeEcdsaP256 };
  const m = await interleavedMedians([floorOnce, () => verifyTdx(quote, nodeOptions), () => verifyTdx(quote, options)], 16, 25);
  const [floor, warmNode, warm] = [m[0]!, m[1]!, m[2]!];
  // Cold: every signature of the path verified again: PCK chain 3 (leaf, CA, root self-signature), TCB info 3
  // (signer, root, body), QE identity 3, root CA CRL 1, PCK CRL 1, QE report 1, quote 1 = 13 verifies.
  const COLD_VERIFIES = 13;
  const cold = await medianUs(async () => {
    clearTdxCaches();
    await verifyTdx(quote, options);
  }, 100, 10);
  return [
    atMost('verifyTdx warm, node:crypto quote-signature backend (as gm verify tdx runs it)', warmNode, 'µs', `${WARM_VERIFIES} × node:crypto ECDSA P-256 verify`, floor, 2,
      'the quote signature is verified every call; PCK chain, QE report, collateral and CRL signatures cached by exact bytes'),
    atMost('verifyTdx warm, WebCrypto default (browser-portable)', warm, 'µs', `${WARM_VERIFIES} × node:crypto ECDSA P-256 verify`, floor, 3,
      'one WebCrypto P-256 verify alone costs ~1.5× node:crypto in Node 24 (mostly synchronous on the main thread)'),
    atMost('verifyTdx cold (caches cleared; imported CryptoKeys stay cached)', cold, 'µs', `${COLD_VERIFIES} × node:crypto ECDSA P-256 verify`, floor * COLD_VERIFIES, 4,
      'informational: every chain, collateral, CRL and QE signature re-verified with WebCrypto'),
  ];
}
