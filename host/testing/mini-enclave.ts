/**
 * A minimal gateway that speaks the enclave's wire protocol (sim SEV-SNP, or with `tdx` sim TDX, evidence bound to its keys, OHTTP and
 * chunked OHTTP, receipts) with a canned answer. It is a test double for the client SDK's own tests, where the
 * gateway's behaviour must be scripted (rotate the key, refuse a config forever, tamper with the evidence); the
 * whole-stack tests use the real enclave. It echoes nothing of the prompt.
 */
import { Hono } from 'hono';
import { encodeBundle } from '../../attestation/bundle.ts';
import { fromHex } from '../../attestation/bytes.ts';
import { createSimAmd, type SimAmd } from '../../attestation/sevsnp/sim.ts';
import { servedFromCollateral } from '../../attestation/tdx/collateral.ts';
import type { SimTdx } from '../../attestation/tdx/sim.ts';
import { decodeRequest, encodeResponse, responseStream } from '../../protocol/bhttp.ts';
import { reportData } from '../../protocol/binding.ts';
import { decapsulateChunkedRequest } from '../../protocol/chunked.ts';
import { MEDIA_OHTTP_CHUNKED_REQ, MEDIA_OHTTP_CHUNKED_RES, MEDIA_OHTTP_RES, MEDIA_PROBLEM_JSON, PROBLEM_TYPE_OHTTP_KEY } from '../../protocol/media.ts';
import { decapsulateRequest, encodeKeyConfigs, generateKeyConfig, type GatewayKey } from '../../protocol/ohttp.ts';
import { StreamChain, type StreamCommitment } from '../../protocol/stream-chain.ts';
import { generateReceiptKey, RECEIPT_SSE_EVENT, RECEIPT_TRAILER, receiptEnvelope, receiptHeaderValue, type ReceiptSigner, ZERO_HASH } from '../../protocol/receipt.ts';

export const MINI_TOKENS = ['Confidential ', 'hello ', 'from ', 'the ', 'mini ', 'enclave.'];

export interface MiniEnclave {
  readonly app: Hono;
  /** Switches to a new OHTTP key (new key id); requests to the old one get the RFC 9458 §6 key problem. */
  rotate(): Promise<void>;
  /** Makes every OHTTP request look like a key mismatch (a gateway that never accepts the attested key). */
  refuseAllKeys: boolean;
  /** Leave the certificates out of the bundle (as a host without the SNP certificate table would). */
  omitCerts: boolean;
  /** sim-tdx: leave the collateral (TCB info, QE identity, CRLs, signing chain) out of the bundle. */
  omitCollateral: boolean;
  /** MEASUREMENT to report (default the sim provider's 0x5a × 48). */
  measurement: Uint8Array;
  /**
   * Streams something other than what the receipt's stream chain covers: one event dropped, two swapped, or one
   * altered (what a faulty or hostile component between the chain and the client would do).
   */
  streamFault: 'drop' | 'reorder' | 'alter' | undefined;
  readonly amd: SimAmd;
  /** Every decrypted inner request path (for assertions). */
  readonly seen: string[];
}

/**
 * `tdx`: serve sim-tdx bundles (quotes from this sim Intel signer, its default collateral) instead of sim-sev-snp.
 * `keyId`: the first OHTTP key id (default 1); `rotate()` moves to the next one.
 */
export async function startMiniEnclave(o: { amd?: SimAmd; tdx?: SimTdx; keyId?: number } = {}): Promise<MiniEnclave> {
  const amd = o.amd ?? (await createSimAmd({ product: 'Genoa' }));
  let key: GatewayKey = await generateKeyConfig(o.keyId ?? 1);
  let receipt: ReceiptSigner = await generateReceiptKey();
  let seq = 0;
  let prev: Uint8Array = ZERO_HASH;
  const seen: string[] = [];
  let tdxCollateral: Promise<ReturnType<typeof servedFromCollateral>> | undefined;
  const app = new Hono();
  const self: MiniEnclave = {
    app,
    amd,
    seen,
    refuseAllKeys: false,
    omitCerts: false,
    omitCollateral: false,
    measurement: fromHex('5a'.repeat(48)),
    streamFault: undefined,
    async rotate() {
      key = await generateKeyConfig((key.config.keyId + 1) & 0xff);
      receipt = await generateReceiptKey();
    },
  };
  const sign = async (model: string, outputTokens: number, stream?: StreamCommitment) => {
    const s = await receipt.sign({
      seq: ++seq, prev, requestId: `req-${seq}`, time: Date.now(), model, account: 'anonymous', workerId: 'mini', workerKey: new Uint8Array(32), evidenceDigest: new Uint8Array(32),
      offerId: 'offer-mini', offerDigest: new Uint8Array(32), inputTokens: 3, outputTokens, currency: 'USD', pricePerMInput: 0n, pricePerMOutput: 0n, feeBasisPoints: 0,
      workerCost: 0n, fee: 0n, total: 0n, terms: { kind: 'prepaid' }, sim: true, ...(stream ? { stream } : {}),
    });
    prev = s.hash;
    return receiptEnvelope(s);
  };
  const keyProblem = () => new Response(JSON.stringify({ type: PROBLEM_TYPE_OHTTP_KEY, title: 'key configuration not accepted', status: 400, code: 'OHTTP_KEY_CONFIG' }), { status: 400, headers: { 'content-type': MEDIA_PROBLEM_JSON } });

  app.get('/v1/attestation', async (c) => {
    const nonce = fromHex(c.req.query('nonce') ?? '00'.repeat(32));
    const keyConfigs = encodeKeyConfigs([key.config]);
    const rd = await reportData({ role: 'enclave', nonce, keyConfigs, signingKey: receipt.publicKey });
    const keys = { ohttp: keyConfigs, receipt: receipt.publicKey };
    let bundle: Uint8Array;
    if (o.tdx) {
      tdxCollateral ??= o.tdx.collateral().then(servedFromCollateral);
      const evidence = await o.tdx.quote({ reportData: rd });
      bundle = encodeBundle({ v: 1, platform: 'sim-tdx', evidence, certs: [], collateral: self.omitCollateral ? {} : await tdxCollateral, keys, nonce, issuedAt: Date.now() });
    } else {
      const evidence = await amd.vcek.signReport({ measurement: self.measurement, reportData: rd });
      bundle = encodeBundle({ v: 1, platform: 'sim-sev-snp', evidence, certs: self.omitCerts ? [] : [amd.vcek.der, amd.askDer, amd.arkDer], collateral: {}, keys, nonce, issuedAt: Date.now() });
    }
    return c.body(bundle as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/cbor' });
  });
  app.get('/.well-known/ohttp-gateway', (c) => c.body(encodeKeyConfigs([key.config]) as Uint8Array<ArrayBuffer>, 200, { 'content-type': 'application/ohttp-keys' }));
  app.post('/v1/ohttp', async (c) => {
    const body = new Uint8Array(await c.req.arrayBuffer());
    if (self.refuseAllKeys || body[0] !== key.config.keyId) return keyProblem();
    const enc = encoder();
    if ((c.req.header('content-type') ?? '') === MEDIA_OHTTP_CHUNKED_REQ) {
      const opener = decapsulateChunkedRequest([key]);
      const parts = [...(await opener.push(body)), ...(await opener.end())];
      const req = decodeRequest(concatAll(parts)).request;
      seen.push(req.path);
      const model = (JSON.parse(new TextDecoder().decode(req.content)) as { model: string }).model;
      const sealer = await opener.sealResponse();
      const stream = new ReadableStream<Uint8Array>({
        async start(ctl) {
          ctl.enqueue(await sealer.sealChunk(responseStream.head(200, [['content-type', 'text/event-stream']])));
          // The receipt commits to the hash chain over the events streamed before it (protocol/stream-chain.ts).
          const chain = new StreamChain();
          const events = MINI_TOKENS.map((t) => enc(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: t } }] })}\n\n`));
          for (const e of events) chain.add(e);
          const fault = self.streamFault;
          const sent = fault === 'drop' ? events.filter((_, i) => i !== 1) : fault === 'reorder' ? [events[1]!, events[0]!, ...events.slice(2)] : fault === 'alter' ? events.map((e, i) => (i === 1 ? enc(new TextDecoder().decode(e).replace(/"content":"/, '"content":"X')) : e)) : events;
          for (const e of sent) ctl.enqueue(await sealer.sealChunk(responseStream.content(e)));
          ctl.enqueue(await sealer.sealChunk(responseStream.content(enc(`event: ${RECEIPT_SSE_EVENT}\ndata: ${JSON.stringify(await sign(model, MINI_TOKENS.length, chain.commitment))}\n\n`))));
          ctl.enqueue(await sealer.sealChunk(responseStream.content(enc('data: [DONE]\n\n'))));
          ctl.enqueue(await sealer.sealChunk(responseStream.end(), { final: true }));
          ctl.close();
        },
      });
      return new Response(stream, { headers: { 'content-type': MEDIA_OHTTP_CHUNKED_RES } });
    }
    const { request, context } = await decapsulateRequest([key], body);
    const req = decodeRequest(request).request;
    seen.push(req.path);
    const model = (JSON.parse(new TextDecoder().decode(req.content)) as { model: string }).model;
    const answer = { id: 'chatcmpl-mini', object: 'chat.completion', created: 0, model, choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: MINI_TOKENS.join('') } }], usage: { prompt_tokens: 3, completion_tokens: MINI_TOKENS.length, total_tokens: 3 + MINI_TOKENS.length } };
    const inner = encodeResponse({ informational: [], status: 200, headers: [['content-type', 'application/json']], content: enc(JSON.stringify(answer)), trailers: [[RECEIPT_TRAILER, receiptHeaderValue(await sign(model, MINI_TOKENS.length))]] });
    return c.body((await context.sealResponse(inner)) as Uint8Array<ArrayBuffer>, 200, { 'content-type': MEDIA_OHTTP_RES });
  });
  return self;
}

function encoder(): (s: string) => Uint8Array {
  const te = new TextEncoder();
  return (s) => te.encode(s);
}

function concatAll(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
