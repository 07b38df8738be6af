/**
 * The relay's per-source rate limit: one source (an IPv4 address, or an IPv6 /64) past its budget gets 429 and its
 * requests never reach the enclave, while other sources are served; the budget refills with time.
 */
import { Hono } from 'hono';
import { afterAll, describe, expect, it } from 'vitest';
import { hostApp } from '../host/app.ts';
import { EnclaveGate } from '../host/gate.ts';
import { sourceOf } from '../host/limits.ts';
import { listen, type Listening } from '../host/serve.ts';

const REPORT = { subject: 'evidence bundle (sim-sev-snp)', verified: true, checks: [{ id: 'bundle.cpu', status: 'pass' as const, what: 'cpu evidence' }] };

describe('relay rate limit per source', () => {
  let upstream: Listening | undefined;
  let gate: EnclaveGate | undefined;
  afterAll(async () => {
    gate?.stop();
    await upstream?.close();
  });

  it('refuses a source over its budget with 429 before the enclave, serves the others, refills over time', async () => {
    let reached = 0;
    const enclave = new Hono();
    enclave.post('/v1/ohttp', (c) => {
      reached++;
      return c.body(new Uint8Array([1]), 200, { 'content-type': 'message/ohttp-res' });
    });
    upstream = await listen(enclave.fetch);
    gate = new EnclaveGate({ check: async () => ({ report: REPORT, summary: { platform: 'sim-sev-snp' } }), intervalMs: 60_000 });
    await gate.start();
    const clock = { now: 1_000_000 };
    const app = hostApp({ relay: { enclave: upstream.url }, gate, listings: async () => ({ workers: [], offers: [] }), rateLimit: { perSecond: 1, burst: 3, now: () => clock.now } });
    const post = (remoteAddress: string) =>
      app.request('/v1/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(8) }, { incoming: { socket: { remoteAddress } } });

    for (let i = 0; i < 3; i++) expect((await post('2001:db8:1:2::10')).status).toBe(200);
    const limited = await post('2001:db8:1:2:ffff::99'); // same /64: same source
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe('RELAY_RATE_LIMITED');
    expect(reached).toBe(3);
    expect((await post('2001:db8:1:3::10')).status).toBe(200); // another /64
    expect((await post('::ffff:192.0.2.7')).status).toBe(200);
    clock.now += 1_000;
    expect((await post('2001:db8:1:2::10')).status).toBe(200);
    expect((await post('2001:db8:1:2::10')).status).toBe(429);
    expect(reached).toBe(6);
    expect(await (await app.request('/metrics')).text()).toContain('gm_host_relay_requests_total{result="rate_limited"} 2');
  });

  it('keys sources by IPv4 address or IPv6 /64', () => {
    expect(sourceOf('192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceOf('2001:0db8:0000:0000:abcd::1')).toBe('2001:db8:0:0::/64');
    expect(sourceOf('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(sourceOf(undefined)).toBe('unknown');
  });
});
