/**
 * A minimal client built on the protocol module for the stack tests and the benchmark: fetch the enclave's bundle
 * with a fresh nonce, verify it (sim allowed; REPORT_DATA must bind the served key configs and receipt key), then
 * send OpenAI requests through OHTTP (plain for non-streaming, chunked for streaming). Nothing is sent to the
 * gateway before verification passed.
 */
import { bundleFromJson, decodeBundle, encodeEnclaveSettings } from '../../attestation/bundle.ts';
import { verifyBundle } from '../../attestation/bundle-verify.ts';
import { equalBytes, hex } from '../../attestation/bytes.ts';
import { rejected } from '../../attestation/errors.ts';
import { reportData } from '../../protocol/binding.ts';
import { decodeKeyConfigs, type KeyConfig } from '../../protocol/ohttp.ts';
import { simWorkerPolicy } from './harness.ts';
import { fetchTransport, sendChunked, sendPlain, type InnerResponse, type Transport } from '../../enclave/ohttp/client.ts';
import { bhttpRequest } from '../../enclave/ohttp/messages.ts';

export interface TestClient {
  readonly config: KeyConfig;
  post(path: string, body: unknown, o?: { stream?: boolean; signal?: AbortSignal }): Promise<InnerResponse>;
  get(path: string): Promise<InnerResponse>;
}

/** `fetch`: how the attestation and the key configs are fetched (default: the global fetch). */
export async function connect(enclaveUrl: string, o: { transport?: Transport; json?: boolean; fetch?: (url: string, init?: RequestInit) => Promise<Response> } = {}): Promise<TestClient> {
  const get = o.fetch ?? fetch;
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  const r = await get(`${enclaveUrl}/v1/attestation?nonce=${hex(nonce)}`, o.json ? { headers: { accept: 'application/json' } } : {});
  const bundle = o.json ? bundleFromJson(await r.json()) : decodeBundle(new Uint8Array(await r.arrayBuffer()));
  const served = new Uint8Array(await (await get(`${enclaveUrl}/.well-known/ohttp-gateway`)).arrayBuffer());
  if (!equalBytes(served, bundle.keys.ohttp)) throw rejected('KEY_CONFIG_MISMATCH', 'served key configs differ from the attested ones');
  const rd = await reportData({ role: 'enclave', nonce, keyConfigs: bundle.keys.ohttp, signingKey: bundle.keys.receipt!, ...(bundle.settings ? { settings: encodeEnclaveSettings(bundle.settings) } : {}) });
  await verifyBundle(bundle, { expectedReportData: rd, expectedNonce: nonce, policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, now: new Date(), maxAgeMs: 60_000 });
  const config = decodeKeyConfigs(bundle.keys.ohttp)[0]!;
  const transport = o.transport ?? fetchTransport(`${enclaveUrl}/v1/ohttp`);
  const te = new TextEncoder();
  return {
    config,
    post(path, body, po = {}) {
      const req = bhttpRequest('POST', path, [['content-type', 'application/json']], te.encode(JSON.stringify(body)));
      return po.stream ? sendChunked(transport, config, req, po.signal) : sendPlain(transport, config, req, po.signal);
    },
    get(path) {
      return sendPlain(transport, config, bhttpRequest('GET', path, [], new Uint8Array(0)));
    },
  };
}

/** Concatenated `delta.content` of an OpenAI SSE stream, and the events seen. */
export async function readSse(body: ReadableStream<Uint8Array>): Promise<{ text: string; events: { event?: string; data: string }[] }> {
  const raw = await new Response(body).text();
  const events = raw.split('\n\n').filter((e) => e.trim()).map((e) => {
    const lines = e.split('\n');
    const ev = lines.find((l) => l.startsWith('event:'))?.slice(6).trim();
    const data = lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
    return ev ? { event: ev, data } : { data };
  });
  let text = '';
  for (const e of events) {
    if (e.event || e.data === '[DONE]') continue;
    const j = JSON.parse(e.data) as { choices?: { delta?: { content?: string }; text?: string }[] };
    text += j.choices?.[0]?.delta?.content ?? j.choices?.[0]?.text ?? '';
  }
  return { text, events };
}
