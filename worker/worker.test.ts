import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeBundle } from '../attestation/bundle.ts';
import { toBase64 } from '../attestation/bytes.ts';
import { isGmError } from '../attestation/errors.ts';
import { buildSimGpuReport } from '../attestation/nvidia/sim.ts';
import { memoryLogger } from '../enclave/log.ts';
import { sendPlain, type Transport } from '../enclave/ohttp/client.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { simProvider } from '../enclave/tee/sim.ts';
import { decodeKeyConfigs, encapsulateRequest, generateKeyConfig } from '../protocol/ohttp.ts';
import { encodeRequest } from '../protocol/bhttp.ts';
import { authorizationFor, newCredential, openCredential, sealCredential, WORKER_AUTH_HEADER } from '../protocol/worker-auth.ts';
import { simVendors } from '../test/stack/harness.ts';
import { createWorkerApp, generateWorkerKeys } from './app.ts';
import { commandGpuSource, gpuEvidenceFromNvtrustJson, simGpuSource } from './gpu.ts';

async function worker(o: { maxConcurrentStreams?: number; hold?: Promise<void> } = {}) {
  const { amd, nvidia } = await simVendors();
  const keys = await generateWorkerKeys();
  const forwarded: string[] = [];
  const w = createWorkerApp({
    keys, tee: simProvider({ amd }), gpu: simGpuSource({ signer: nvidia }), log: memoryLogger('worker').log,
    ...(o.maxConcurrentStreams ? { maxConcurrentStreams: o.maxConcurrentStreams } : {}),
    handler: async (req) => {
      forwarded.push(new URL(req.url).pathname);
      await o.hold;
      return Response.json({ ok: true });
    },
  });
  // The enclave this worker registered with: its credential arrives sealed to the worker's key configuration.
  const credential = newCredential();
  await w.acceptCredential('http://enclave.test', await sealCredential(keys.gateway[0]!.config, keys.workerId, credential));
  /** A transport as the enclave's (`auth`: how the request is authorized; default the enclave's MAC). */
  const transportWith = (auth: (body: Uint8Array, ct: string) => Promise<Record<string, string>>): Transport => async (body, ct) => {
    const r = await w.app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': ct, ...(await auth(body, ct)) }, body: body as Uint8Array<ArrayBuffer> });
    const reader = r.body!.getReader();
    return { status: r.status, contentType: r.headers.get('content-type') ?? '', body: { async *[Symbol.asyncIterator]() { for (;;) { const x = await reader.read(); if (x.done) return; yield x.value; } } }, cancel: () => void reader.cancel() };
  };
  const transport = transportWith(async (body, ct) => ({ [WORKER_AUTH_HEADER]: await authorizationFor(credential, ct, body) }));
  return { w, keys, forwarded, transport, transportWith, credential };
}

describe('worker agent', () => {
  it('accepts only requests encapsulated to its own key configuration', async () => {
    const { keys, forwarded, transport } = await worker();
    const ok = await sendPlain(transport, keys.gateway[0]!.config, bhttpRequest('POST', '/v1/chat/completions', [], new TextEncoder().encode('{}')));
    expect(ok.status).toBe(200);
    const stranger = await generateKeyConfig(keys.gateway[0]!.config.keyId);
    const e = await sendPlain(transport, stranger.config, bhttpRequest('POST', '/v1/chat/completions', [], new Uint8Array())).catch((x: unknown) => x);
    expect(isGmError(e)).toBe(true);
    expect(forwarded).toEqual(['/v1/chat/completions']);
  });

  it('retires the key before the previous one at rotation, and its replay entries with it', async () => {
    const { w, keys, transport } = await worker();
    const first = keys.gateway[0]!.config;
    const send = (cfg: typeof first) => sendPlain(transport, cfg, bhttpRequest('POST', '/v1/chat/completions', [], new TextEncoder().encode('{}')));
    const entries = async () => Number(/^gm_worker_replay_cache_entries (\d+)$/m.exec(await w.metrics.render())?.[1]);
    expect((await send(first)).status).toBe(200);
    expect(await entries()).toBe(1);
    await w.rotateKeys();
    const second = decodeKeyConfigs(w.keyConfigs)[0]!;
    expect((await send(first)).status).toBe(200); // still accepted for one period
    expect((await send(second)).status).toBe(200);
    expect(await entries()).toBe(3);
    await w.rotateKeys();
    expect(await entries()).toBe(1); // the first key retired: only the second key's request is remembered
    expect(await send(first).catch((x: unknown) => (isGmError(x) ? x.code : x))).toBe('UPSTREAM_REFUSED'); // the gateway's 400 OHTTP_KEY_CONFIG
  });

  it('refuses inference from anyone but an enclave it registered with', async () => {
    const { keys, forwarded, transportWith, credential } = await worker();
    const req = () => bhttpRequest('POST', '/v1/chat/completions', [], new TextEncoder().encode('{}'));
    const codeOf = (p: Promise<unknown>) => p.then(() => 'OK', (x: unknown) => (isGmError(x) ? (x.cause as { code?: string }).code : x));
    // Straight at the worker: a valid encapsulation to its public key configuration, no authorization.
    expect(await codeOf(sendPlain(transportWith(async () => ({})), keys.gateway[0]!.config, req()))).toBe('WORKER_AUTH_REQUIRED');
    // A credential of its own making, a malformed header, and the enclave's MAC carried over to another body.
    const own = newCredential();
    expect(await codeOf(sendPlain(transportWith(async (b, ct) => ({ [WORKER_AUTH_HEADER]: await authorizationFor(own, ct, b) })), keys.gateway[0]!.config, req()))).toBe('WORKER_AUTH_FAILED');
    expect(await codeOf(sendPlain(transportWith(async () => ({ [WORKER_AUTH_HEADER]: 'Bearer x' })), keys.gateway[0]!.config, req()))).toBe('WORKER_AUTH_FAILED');
    const seen = (await encapsulateRequest(keys.gateway[0]!.config, encodeRequest(req()))).encapsulated;
    const stolen = await authorizationFor(credential, 'message/ohttp-req', seen);
    expect(await codeOf(sendPlain(transportWith(async () => ({ [WORKER_AUTH_HEADER]: stolen })), keys.gateway[0]!.config, req()))).toBe('WORKER_AUTH_FAILED');
    expect(forwarded).toEqual([]);
  });

  it('opens only a credential sealed to its own key and worker id; a new one from the same enclave replaces the old', async () => {
    const { w, keys, transport, transportWith, credential } = await worker();
    const other = await generateWorkerKeys();
    const c = newCredential();
    await expect(w.acceptCredential('http://enclave.test', await sealCredential(other.gateway[0]!.config, keys.workerId, c))).rejects.toMatchObject({ code: 'WORKER_CREDENTIAL_INVALID' });
    await expect(openCredential(keys.gateway, other.workerId, await sealCredential(keys.gateway[0]!.config, keys.workerId, c))).rejects.toMatchObject({ code: 'WORKER_CREDENTIAL_INVALID' });
    const send = (t: Transport) => sendPlain(t, keys.gateway[0]!.config, bhttpRequest('POST', '/v1/chat/completions', [], new TextEncoder().encode('{}'))).then((r) => r.status, (x: unknown) => (x as { cause?: { code?: string } }).cause?.code);
    expect(await send(transport)).toBe(200);
    await w.acceptCredential('http://enclave.test', await sealCredential(keys.gateway[0]!.config, keys.workerId, c)); // the enclave restarted
    expect(await send(transport)).toBe('WORKER_AUTH_FAILED');
    expect(await send(transportWith(async (b, ct) => ({ [WORKER_AUTH_HEADER]: await authorizationFor(c, ct, b) })))).toBe(200);
    expect(credential).not.toEqual(c);
  });

  it('limits concurrent streams: past the limit a request is refused at once (busy), not queued', async () => {
    let open!: () => void;
    const hold = new Promise<void>((r) => (open = r));
    const { keys, transport, forwarded } = await worker({ maxConcurrentStreams: 1, hold });
    const send = () => sendPlain(transport, keys.gateway[0]!.config, bhttpRequest('POST', '/v1/chat/completions', [], new TextEncoder().encode('{}')));
    const first = send();
    await expect.poll(() => forwarded.length).toBe(1);
    expect(await send().then(() => 'OK', (x: unknown) => (x as { cause?: { code?: string } }).cause?.code)).toBe('GATEWAY_BUSY');
    open();
    expect((await first).status).toBe(200);
    expect((await send()).status).toBe(200);
  });

  it('serves a fresh bundle bound to the nonce, with GPU evidence, keys as served, and says sim', async () => {
    const { w, keys } = await worker();
    const nonce = 'ab'.repeat(32);
    const r = await w.app.request(`/v1/attestation?nonce=${nonce}`);
    expect(r.headers.get('gm-tee')).toBe('sim');
    const b = decodeBundle(new Uint8Array(await r.arrayBuffer()));
    expect(Buffer.from(b.nonce).toString('hex')).toBe(nonce);
    expect(b.gpu).toHaveLength(1);
    expect(b.keys.signing).toEqual(keys.signing.publicKey);
    const served = new Uint8Array(await (await w.app.request('/.well-known/ohttp-gateway')).arrayBuffer());
    expect(served).toEqual(b.keys.ohttp);
    expect((await w.app.request('/v1/attestation?nonce=zz')).status).toBe(400);
  });
});

describe('GPU evidence collector', () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  async function script(ccMode: string): Promise<string> {
    const { nvidia } = await simVendors();
    dir ??= await mkdtemp(join(tmpdir(), 'gm-gpu-'));
    const report = await buildSimGpuReport(nvidia, { nonce: new Uint8Array(32).fill(0x33) });
    const json = JSON.stringify([{ arch: 'HOPPER', certificate: toBase64(new TextEncoder().encode(nvidia.chainPem)), evidence: toBase64(report), cc_mode: ccMode }]);
    const p = join(dir, `collect-${ccMode}.sh`);
    // the script exits 3 unless the nonce came both as $GM_GPU_NONCE and as its last argument
    await writeFile(p, `#!/bin/sh\n[ "$GM_GPU_NONCE" = "$1" ] || exit 3\ncat <<'EOF'\n${json}\nEOF\n`);
    await chmod(p, 0o755);
    return p;
  }
  it('runs the operator command with the nonce and parses the nvtrust JSON', async () => {
    const ev = await commandGpuSource(await script('ON'))(new Uint8Array(32).fill(0x33));
    expect(ev).toHaveLength(1);
    expect(ev[0]!.arch).toBe('HOPPER');
    expect(ev[0]!.certs).toHaveLength(3);
    expect(ev[0]!.ccMode).toBe('on');
  });
  it('refuses GPU evidence whose CC mode is not ON, and malformed output', async () => {
    const e = await commandGpuSource(await script('OFF'))(new Uint8Array(32)).catch((x: unknown) => x);
    expect(isGmError(e, 'GPU_CC_MODE_OFF')).toBe(true);
    expect(() => gpuEvidenceFromNvtrustJson('[{"arch":"HOPPER","certificate":"","evidence":""}]')).toThrow(/cc_mode/);
    expect(() => gpuEvidenceFromNvtrustJson('not json')).toThrow();
    const failing = await commandGpuSource('exit 1')(new Uint8Array(32)).catch((x: unknown) => x);
    expect(isGmError(failing, 'GPU_COLLECTOR_FAILED')).toBe(true);
  });
});
