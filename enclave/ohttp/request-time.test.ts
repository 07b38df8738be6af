/**
 * The request time through the whole enclave app (docs/protocol.md §13): a request carrying `gm-sent-at` is accepted
 * only inside the window and remembered only until it leaves it; one without is remembered for the key's lifetime in
 * a budget of its own, so a flood of either kind cannot refuse the other, and a flood of timed requests refuses
 * others for no longer than the window.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { decodeResponse, encodeRequest, type Field } from '../../protocol/bhttp.ts';
import { decodeKeyConfigs, encapsulateRequest } from '../../protocol/ohttp.ts';
import { formatRequestTime, GATEWAY_TIME_FIELD, REQUEST_TIME_FIELD } from '../../protocol/request-time.ts';
import { simVendors, simWorkerPolicy } from '../../test/stack/harness.ts';
import { createEnclave, type Enclave, type EnclaveLimits } from '../app.ts';
import { memoryLogger } from '../log.ts';
import { simProvider } from '../tee/sim.ts';
import { bhttpRequest } from './messages.ts';

const T0 = Date.parse('2026-06-01T12:00:00Z');
let e: Enclave | undefined;
afterEach(async () => {
  await e?.close();
  e = undefined;
});

async function setup(o: { limits?: Partial<EnclaveLimits>; requireRequestTime?: boolean } = {}) {
  const clock = { now: T0 };
  const { amd } = await simVendors();
  e = await createEnclave({
    tee: simProvider({ amd }), log: memoryLogger('enclave').log, now: () => clock.now, ...o,
    workerPolicy: { policy: { 'sev-snp': simWorkerPolicy() }, allowSim: true, freshnessMs: 60_000 },
  });
  const enclave = e;
  const cfg = decodeKeyConfigs(enclave.keyConfigs)[0]!;
  /** A sealed GET /v1/models, with `sentAt` (ms) as its request time unless undefined. */
  const seal = async (sentAt: number | undefined, extra: Field[] = []) => {
    const fields: Field[] = sentAt === undefined ? extra : [[REQUEST_TIME_FIELD, formatRequestTime(sentAt)], ...extra];
    return encapsulateRequest(cfg, encodeRequest(bhttpRequest('GET', '/v1/models', fields, new Uint8Array())));
  };
  /** Posts a sealed request and opens the answer (unless `open` is false: a context opens one answer only). */
  const post = async (sealed: Awaited<ReturnType<typeof seal>>, open = true) => {
    const r = await enclave.app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: sealed.encapsulated as Uint8Array<ArrayBuffer> });
    const outer = { status: r.status, code: undefined as string | undefined, inner: undefined as { status: number; code?: string; headers: readonly Field[] } | undefined };
    if (!open) return outer;
    if (r.status !== 200) {
      outer.code = ((await r.json()) as { code: string }).code;
      return outer;
    }
    const { response } = decodeResponse(await sealed.context.openResponse(new Uint8Array(await r.arrayBuffer())));
    const body = JSON.parse(new TextDecoder().decode(response.content)) as { code?: string };
    outer.inner = { status: response.status, headers: response.headers, ...(body.code ? { code: body.code } : {}) };
    return outer;
  };
  const entries = async () => (await (await enclave.app.request('/metrics')).text()).match(/gm_replay_cache_entries\{window="(key|request_time)"\} \d+/g);
  return { clock, seal, post, entries };
}

describe('request time', () => {
  it('accepts a request inside the window once, refuses one outside it inside the encryption with the gateway time', async () => {
    const s = await setup();
    const ok = await s.seal(T0 - 5_000);
    expect((await s.post(ok)).inner?.status).toBe(200);
    expect(await s.post(ok)).toMatchObject({ status: 400, code: 'OHTTP_DECRYPT_FAILED' }); // the replay
    for (const t of [T0 - 61_000, T0 + 31_000]) {
      const r = await s.post(await s.seal(t));
      expect(r.status).toBe(200);
      expect(r.inner).toMatchObject({ status: 400, code: 'REQUEST_TIME_SKEW' });
      expect(r.inner!.headers).toContainEqual([GATEWAY_TIME_FIELD, formatRequestTime(T0)]);
    }
    const bad = await s.post(await s.seal(undefined, [[REQUEST_TIME_FIELD, '01']]));
    expect(bad.inner).toMatchObject({ status: 400, code: 'REQUEST_TIME_INVALID' });
    expect(await s.entries()).toEqual(['gm_replay_cache_entries{window="key"} 0', 'gm_replay_cache_entries{window="request_time"} 1']);
    // Once its time has left the window the entry is gone, and the same bytes are refused on their time alone (a
    // sealed answer, as to any request outside the window; nothing is recorded).
    s.clock.now = T0 + 70_000;
    expect((await s.post(ok, false)).status).toBe(200);
    expect(await s.entries()).toEqual(['gm_replay_cache_entries{window="key"} 0', 'gm_replay_cache_entries{window="request_time"} 0']);
  });

  it('a flood of timed requests refuses others for at most the window', async () => {
    const s = await setup({ limits: { recentReplayEntries: 20 } });
    for (let i = 0; i < 20; i++) expect((await s.post(await s.seal(T0 + 30_000))).inner?.status).toBe(200);
    expect(await s.post(await s.seal(T0))).toMatchObject({ status: 503, code: 'GATEWAY_BUSY' });
    s.clock.now = T0 + 95_000; // the flood's request times have left the window (plus a bucket)
    expect((await s.post(await s.seal(s.clock.now))).inner?.status).toBe(200);
  });

  it('requests without a request time have a budget of their own: flooding it does not refuse timed requests', async () => {
    const s = await setup({ limits: { replayEntries: 5 } });
    for (let i = 0; i < 5; i++) expect((await s.post(await s.seal(undefined))).inner?.status).toBe(200);
    expect(await s.post(await s.seal(undefined))).toMatchObject({ status: 503, code: 'GATEWAY_BUSY' });
    expect((await s.post(await s.seal(T0))).inner?.status).toBe(200);
  });

  it('a gateway that requires the request time refuses requests without it, inside the encryption', async () => {
    const s = await setup({ requireRequestTime: true });
    expect((await s.post(await s.seal(undefined))).inner).toMatchObject({ status: 400, code: 'REQUEST_TIME_REQUIRED' });
    expect((await s.post(await s.seal(T0))).inner?.status).toBe(200);
  });
});
