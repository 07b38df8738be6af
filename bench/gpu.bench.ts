/**
 * NVIDIA GPU evidence benchmarks, against a floor measured in the same run: one bare ECDSA
 * P-384/SHA-384 verify with node:crypto over the same report bytes, signature and leaf key.
 *  - verify one GPU report with a warm chain: the report is parsed each time (SPDM transcript, opaque fields), the
 *    chain is the worker's known one (parsed and verified before; the cache re-checks validity only), then FWID,
 *    nonce, envelope and the report signature. Measured with the node:crypto P-384 verifier that Node callers pass
 *    (`p384Verifier`), target ratio <= 1.5; and with the default WebCrypto path, for information.
 *  - the 8-GPU nvtrust evidence file from its JSON text (8 reports and 8 chains parsed, warm chains), the 8
 *    signatures verified concurrently with node:crypto's thread-pool form: <= 10 floors.
 * Uses the real vectors (test/vectors); sim evidence of the same shape only when GM_REQUIRE_VECTORS=0 leaves them out.
 */
import { createPublicKey, verify } from 'node:crypto';
import { fromHex } from '../attestation/bytes.ts';
import { type GpuVerifyOptions, parseGpuEvidenceJson, verifyGpuEvidence, verifyOneGpu } from '../attestation/nvidia/index.ts';
import { buildSimGpuEvidence, createNvidiaSimSigner } from '../attestation/nvidia/sim.ts';
import { parseGpuAttestationReport } from '../attestation/nvidia/spdm.ts';
import { nodeP384Verifier, nodeP384VerifierAsync } from '../cli/node-verifiers.ts';
import { hasVectors, trustStore, vectorText } from '../test/vectors.ts';
import { type BenchRow, atMost } from './harness.ts';

export const title = 'nvidia: GPU evidence verification';

/**
 * Medians of several functions measured in interleaved rounds (floor, value, floor, value, ...), so that load
 * drifting during the run (CI shares two cores) affects the floor and the value alike.
 */
async function interleavedMedians(fns: readonly (() => unknown)[], rounds: number, perRound: number): Promise<number[]> {
  const samples = fns.map(() => [] as number[]);
  for (const f of fns) for (let i = 0; i < 10; i++) await f();
  for (let r = 0; r < rounds; r++) {
    for (const [k, f] of fns.entries()) {
      for (let i = 0; i < perRound; i++) {
        const t = process.hrtime.bigint();
        await f();
        samples[k]!.push(Number(process.hrtime.bigint() - t) / 1000);
      }
    }
  }
  return samples.map((xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);
}

export async function run(): Promise<BenchRow[]> {
  const now = new Date('2025-06-01T00:00:00Z');
  let json: string;
  let nonce: Uint8Array;
  let base: Omit<GpuVerifyOptions, 'expectedNonce'>;
  if (hasVectors) {
    json = vectorText('nvidia/nvtrust/gpu_evidence.json');
    nonce = fromHex('4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e');
    base = { now, trustStore: await trustStore(), policy: null };
  } else {
    const signer = await createNvidiaSimSigner({ now });
    nonce = new Uint8Array(32).fill(1);
    json = await buildSimGpuEvidence(signer, Array.from({ length: 8 }, () => ({ nonce })));
    base = { now, roots: { device: [signer.root] }, sim: true, policy: null };
  }
  const item = parseGpuEvidenceJson(json)[0]!;
  const raw = item.report.raw;
  const key = createPublicKey({ key: Buffer.from(item.chain[0]!.spki.raw), format: 'der', type: 'spki' });
  const data = item.report.signedBytes;
  const sig = item.report.response.signature;
  if (!verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig)) throw new Error('bench: floor signature does not verify');
  const bare = () => verify('sha384', data, { key, dsaEncoding: 'ieee-p1363' }, sig);

  const node: GpuVerifyOptions = { ...base, expectedNonce: nonce, p384Verifier: nodeP384Verifier };
  const web: GpuVerifyOptions = { ...base, expectedNonce: nonce };
  await verifyOneGpu(item, node); // warms the chain cache
  await verifyOneGpu(item, web); // and WebCrypto's imported key
  const one = (o: GpuVerifyOptions) => () => verifyOneGpu({ ...item, report: parseGpuAttestationReport(raw) }, o);
  const many: GpuVerifyOptions = { ...base, expectedNonce: nonce, p384Verifier: nodeP384VerifierAsync };
  await verifyGpuEvidence(json, many);
  const [floor, single, singleWeb] = await interleavedMedians([bare, one(node), one(web)], 40, 10);
  const bare8 = () => {
    for (let k = 0; k < 8; k++) bare();
  };
  const [floor8, all, allSync, eightBare] = await interleavedMedians([bare, () => verifyGpuEvidence(json, many), () => verifyGpuEvidence(json, node), bare8], 20, 5);
  const src = hasVectors ? 'real H100 vectors' : 'sim evidence (vectors absent)';
  return [
    atMost('verify one GPU report, warm chain (parse + FWID + nonce + signature), node:crypto verifier', single!, 'µs', 'bare node:crypto ECDSA P-384 verify', floor!, 1.5, src),
    atMost('verify the 8-GPU evidence file from JSON, warm chains, node:crypto verifier on the thread pool', all!, 'µs', 'bare node:crypto ECDSA P-384 verify', floor8!, 10, src),
    atMost('verify the 8-GPU evidence file from JSON, warm chains, synchronous node:crypto verifier', allSync!, 'µs', 'bare node:crypto ECDSA P-384 verify', floor8!, 10,
      `${src}; informational: no thread-pool parallelism`),
    atMost('reference: 8 bare node:crypto verifies back to back (the sequential lower bound)', eightBare!, 'µs', 'bare node:crypto ECDSA P-384 verify', floor8!, 10,
      'informational: above 8 only when the machine is loaded (long bursts get preempted)'),
    atMost('verify one GPU report, warm chain, default WebCrypto verifier', singleWeb!, 'µs', 'bare node:crypto ECDSA P-384 verify', floor!, 2.5,
      `${src}; informational: WebCrypto adds a thread-pool round trip`),
  ];
}
