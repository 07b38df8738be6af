/**
 * The host status page as HTML: escaping, relative times from the injected clock with the ISO time in the title, the
 * GPU column from the enclave's listed GPU claims, and the sim and unreachable banners.
 */
import { describe, expect, it } from 'vitest';
import { enclaveListings } from '../host/enclave-check.ts';
import { relativeTime, renderStatus } from '../host/status-page.ts';
import { listings, NOW, simStatus } from './browser/status-page-fixture.ts';

describe('host status page', () => {
  it('dates times relative to the given now, the ISO time on hover', () => {
    expect(relativeTime('2026-12-03T11:57:00Z', NOW)).toBe('<time datetime="2026-12-03T11:57:00.000Z" title="2026-12-03T11:57:00.000Z">3 min ago</time>');
    expect(relativeTime('2026-12-03T14:30:00Z', NOW)).toContain('>in 2 h<');
    expect(relativeTime('2026-12-03T11:59:58Z', NOW)).toContain('>just now<');
    expect(relativeTime('2026-11-30T12:00:00Z', NOW)).toContain('>3 d ago<');
    expect(relativeTime('<b>not a time</b>', NOW)).toBe('&#60;b&#62;not a time&#60;/b&#62;');
  });

  it('escapes every value from the enclave and the gate', () => {
    const l = listings();
    const html = renderStatus(simStatus({ error: { code: 'X', message: '<script>alert(1)</script>' } }), { ...l, workers: [{ id: '"><img src=x onerror=alert(1)>', gpuClaims: [{ model: '<svg onload=alert(1)>', ccMode: 'on"x' }] }] }, 'https://e/<x>', NOW);
    expect(html).not.toMatch(/<script>alert|<img src=x|<svg onload|<x>|class="cc-on"x/);
    expect(html).toContain('&#60;script&#62;');
  });

  it('folds identical GPUs into one line with model, driver and CC mode', () => {
    const html = renderStatus(simStatus(), listings(), 'https://e', NOW);
    expect(html).toContain('8 × GH100 A01 GSP BROM · driver 550.54.15 · CC <span class="cc-on">on</span>');
    expect(html).toContain('CC <span class="cc-devtools">devtools</span>');
    expect(html).toMatch(/<td data-label="GPUs"><span class="na">not listed<\/span><\/td>/);
  });

  it('shows the sim banner only for a sim enclave, and "enclave unreachable" only when it was', () => {
    const sim = renderStatus(simStatus(), listings(), 'https://e', NOW);
    expect(sim).toContain('id="sim-banner"');
    expect(sim).not.toContain('id="unreachable"');
    const hw = renderStatus(simStatus({ summary: { platform: 'sev-snp', measurement: 'aa' } }), listings(), 'https://e', NOW);
    expect(hw).not.toContain('id="sim-banner"');
    const down = renderStatus(simStatus({ state: 'closed', summary: undefined, report: undefined, error: { code: 'ATTESTATION_UNREACHABLE', message: 'could not fetch (fetch failed: ECONNREFUSED 127.0.0.1:8443)' } }), { workers: undefined, offers: undefined }, 'https://e', NOW);
    expect(down).toContain('<div id="unreachable" class="banner down" role="alert">enclave unreachable: could not fetch (fetch failed: ECONNREFUSED 127.0.0.1:8443)</div>');
    expect(down).toContain('<title>gm host: enclave unreachable</title>');
    const refused = renderStatus(simStatus({ state: 'closed', error: { code: 'SNP_TCB_TOO_OLD', message: 'old' } }), listings(), 'https://e', NOW);
    expect(refused).not.toContain('id="unreachable"');
  });

  it("reads GPU claims from the enclave's worker listing when it carries them", async () => {
    const body = { workers: [
      { id: 'w1', platform: 'tdx', gpus: [{ gpu: 0, arch: 'HOPPER', hwmodel: 'GH100 A01 GSP BROM', driverVersion: '550.54.15', ccMode: 'on' }, { gpu: 1, arch: 'HOPPER', driverVersion: '550.54.15', ccMode: 'on' }] },
      { id: 'w2', gpus: 4 },
      { id: 'w3' },
    ] };
    const f = async (u: string | URL | Request): Promise<Response> => (String(u).endsWith('/v1/workers') ? Response.json(body) : new Response('no', { status: 404 }));
    const l = await enclaveListings('https://e', undefined, f)();
    expect(l.workers).toEqual([
      { id: 'w1', platform: 'tdx', measurement: undefined, gpus: 2, gpuClaims: [{ model: 'GH100 A01 GSP BROM', driver: '550.54.15', ccMode: 'on' }, { model: 'HOPPER', driver: '550.54.15', ccMode: 'on' }], state: undefined, verifiedAt: undefined },
      { id: 'w2', platform: undefined, measurement: undefined, gpus: 4, state: undefined, verifiedAt: undefined },
      { id: 'w3', platform: undefined, measurement: undefined, gpus: undefined, state: undefined, verifiedAt: undefined },
    ]);
  });
});
