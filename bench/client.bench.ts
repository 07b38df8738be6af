/**
 * Client SDK benchmark: cold start (fresh nonce, fetch the bundle, recompute the binding, verify)
 * and per-request overhead, each against a floor measured in the same run on the same in-process gateway
 * (host/testing/mini-enclave.ts, called through app.request so sockets add no noise):
 *
 * - cold start vs verifySevSnp alone on the same kind of report (the work any verifier must do), SNP caches
 *   cleared before every iteration of both: what the SDK adds is fetch, CBOR decode, binding and report assembly;
 * - a non-streaming 1 KiB chat request through client.fetch vs the bare protocol round trip (bhttp encode, OHTTP
 *   encapsulate, the same gateway, open, bhttp decode): what the SDK adds is Request/Response plumbing and receipts.
 * - a streaming request (chunked OHTTP, SSE with a receipt event) through client.fetch vs the bare chunked round trip;
 * - with GM_BENCH_BASELINE=<another checkout of gm>: the bare non-streaming round trip with this tree's client-side
 *   OHTTP (encapsulate, open) vs that tree's, both on the node:crypto backend and the same gateway, timed alternately.
 */
import { decodeBundle } from '../attestation/bundle.ts';
import { hex } from '../attestation/bytes.ts';
import { clearSnpCaches, verifySevSnp } from '../attestation/sevsnp/index.ts';
import { createSimAmd } from '../attestation/sevsnp/sim.ts';
import { createClient, type FetchLike } from '../client/index.ts';
import { parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import { startMiniEnclave } from '../host/testing/mini-enclave.ts';
import { decodeResponse, encodeRequest, ResponseDecoder } from '../protocol/bhttp.ts';
import { encapsulateChunkedRequest, openStream } from '../protocol/chunked.ts';
import { decodeKeyConfigs, encapsulateRequest } from '../protocol/ohttp.ts';
import { parseReceiptEnvelope, parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { pathToFileURL } from 'node:url';
import type { CryptoBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { atMost, type BenchRow } from './harness.ts';

/**
 * Medians of `a` and `b` in microseconds, run alternately (a, b, a, b, ...) so that load from other processes on a
 * shared 2-core machine hits both sides alike.
 */
async function paired(a: () => Promise<unknown>, b: () => Promise<unknown>, iterations: number, warmup: number): Promise<[number, number]> {
  for (let i = 0; i < warmup; i++) {
    await a();
    await b();
  }
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < iterations; i++) {
    let t = process.hrtime.bigint();
    await a();
    ta.push(Number(process.hrtime.bigint() - t) / 1000);
    t = process.hrtime.bigint();
    await b();
    tb.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  const med = (x: number[]) => x.sort((p, q) => p - q)[Math.floor(x.length / 2)]!;
  return [med(ta), med(tb)];
}

export const title = 'client SDK (cold start, per-request overhead)';

export async function run(): Promise<BenchRow[]> {
  const amd = await createSimAmd({ product: 'Genoa' });
  const mini = await startMiniEnclave({ amd });
  const base = 'http://enclave.invalid';
  const f: FetchLike = async (i, init) => mini.app.request(i instanceof Request ? i : String(i), init);
  const policy = parseClientPolicy(simPolicyDoc());

  // Cold start.
  const sample = decodeBundle(new Uint8Array(await (await f(`${base}/v1/attestation?nonce=${'00'.repeat(32)}`)).arrayBuffer()));
  const coldRun = async () => {
    clearSnpCaches();
    await createClient({ url: base, allowSim: true, policy, fetch: f });
  };
  // Floor: the same gateway producing the same evidence, and the platform verifier on it (no SDK around it).
  const verifyRun = async () => {
    clearSnpCaches();
    const b = decodeBundle(new Uint8Array(await (await f(`${base}/v1/attestation?nonce=${'00'.repeat(32)}`)).arrayBuffer()));
    await verifySevSnp(b.evidence, { now: new Date(), roots: { ark: amd.arkDer, ask: amd.askDer }, vcek: amd.vcek.der, policy: null });
  };
  const [cold, verifyFloor] = await paired(coldRun, verifyRun, 60, 5);

  // Per request, non-streaming.
  const client = await createClient({ url: base, allowSim: true, policy, fetch: f });
  const prompt = 'x'.repeat(1024);
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: prompt }] });
  const sdkRun = async () => {
    const r = await client.fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer k' }, body });
    await r.json();
  };
  const kc = decodeKeyConfigs(await (await f(`${base}/.well-known/ohttp-gateway`)).arrayBuffer().then((b) => new Uint8Array(b)))[0]!;
  const te = new TextEncoder();
  const bareRun = async () => {
    const inner = encodeRequest({ method: 'POST', scheme: 'https', authority: 'enclave.invalid', path: '/v1/chat/completions', headers: [['content-type', 'application/json'], ['authorization', 'Bearer k']], content: te.encode(body), trailers: [] });
    const { encapsulated, context } = await encapsulateRequest(kc, inner);
    const r = await f(`${base}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
    const res = decodeResponse(await context.openResponse(new Uint8Array(await r.arrayBuffer()))).response;
    JSON.parse(new TextDecoder().decode(res.content));
    // The receipt is checked in the floor too: it is protocol work, not SDK overhead.
    await verifyReceipt(parseReceiptHeader(res.trailers.find(([k]) => k === 'gm-receipt')![1]).signed);
  };
  const [sdk, bare] = await paired(sdkRun, bareRun, 300, 30);

  // The bare round trip with the client-side OHTTP of this tree vs a baseline checkout's, on the same gateway.
  const baselineRows: BenchRow[] = [];
  const dir = process.env.GM_BENCH_BASELINE;
  if (dir) {
    const root = pathToFileURL(`${dir.replace(/\/$/, '')}/`).href;
    const theirs = (await import(`${root}protocol/ohttp.ts`)) as typeof import('../protocol/ohttp.ts');
    const theirBackend = ((await import(`${root}protocol/node/backend-node.ts`)) as typeof import('../protocol/node/backend-node.ts')).nodeBackend;
    const roundTrip = (encapsulate: typeof encapsulateRequest, backend: CryptoBackend) => async () => {
      const inner = encodeRequest({ method: 'POST', scheme: 'https', authority: 'enclave.invalid', path: '/v1/chat/completions', headers: [['content-type', 'application/json'], ['authorization', 'Bearer k']], content: te.encode(body), trailers: [] });
      const { encapsulated, context } = await encapsulate(kc, inner, { backend });
      const r = await f(`${base}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulated as Uint8Array<ArrayBuffer> });
      const res = decodeResponse(await context.openResponse(new Uint8Array(await r.arrayBuffer()))).response;
      if (res.status !== 200) throw new Error(`bench: the gateway answered ${res.status}`);
    };
    const [mine, theirsUs] = await paired(roundTrip(encapsulateRequest, nodeBackend), roundTrip(theirs.encapsulateRequest, theirBackend), 300, 30);
    baselineRows.push({ ...atMost('bare OHTTP + bhttp round trip, 1 KiB prompt, this tree\'s client OHTTP (node backend)', mine, 'µs', `the same with ${dir}'s client OHTTP`, theirsUs, Infinity), target: 'none (informational)', ok: true });
  }

  // Per request, streaming.
  const sbody = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: prompt }] });
  const sdkStreamRun = async () => {
    const r = await client.fetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: sbody });
    await r.text();
  };
  const bareStreamRun = async () => {
    const inner = encodeRequest({ method: 'POST', scheme: 'https', authority: 'enclave.invalid', path: '/v1/chat/completions', headers: [['content-type', 'application/json'], ['accept', 'text/event-stream']], content: te.encode(sbody), trailers: [] }, { framing: 'indeterminate-length' });
    const sender = await encapsulateChunkedRequest(kc);
    const r = await f(`${base}/v1/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: (await sender.sealChunk(inner, { final: true })) as Uint8Array<ArrayBuffer> });
    const dec = new ResponseDecoder();
    const reader = r.body!.pipeThrough(openStream(sender.openResponse())).getReader();
    let text = '';
    const td = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const e of dec.push(value)) if (e.type === 'content') text += td.decode(e.data, { stream: true });
    }
    dec.end();
    const ev = /event: gm\.receipt\ndata: (.*)\n/.exec(text)!;
    await verifyReceipt(parseReceiptEnvelope(JSON.parse(ev[1]!)).signed);
  };
  const [sdkStream, bareStream] = await paired(sdkStreamRun, bareStreamRun, 300, 30);

  return [
    atMost('client cold start (nonce, fetch bundle, binding, verify; caches cleared)', cold / 1000, 'ms', 'same gateway fetch + verifySevSnp (cold)', verifyFloor / 1000, 1.5, `nonce ${hex(sample.nonce).slice(0, 8)}..`),
    atMost('client.fetch non-streaming chat, 1 KiB prompt', sdk, 'µs', 'bare OHTTP + bhttp round trip, same gateway', bare, 1.5),
    atMost('client.fetch streaming chat (chunked OHTTP, SSE + receipt)', sdkStream, 'µs', 'bare chunked OHTTP + bhttp round trip, same gateway', bareStream, 1.5),
    ...baselineRows,
  ];
}
