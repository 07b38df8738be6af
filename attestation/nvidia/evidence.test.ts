import { describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { parseGpuEvidenceJson } from './evidence.ts';
import { buildSimGpuEvidence, createNvidiaSimSigner } from './sim.ts';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
};

describe('nvtrust JSON evidence form', () => {
  it('parses sim evidence with the declared CC mode; the same chain text yields the same parsed chain', async () => {
    const s = await createNvidiaSimSigner({ now: new Date('2026-01-01T00:00:00Z') });
    const items = parseGpuEvidenceJson(await buildSimGpuEvidence(s, [{ ccMode: 'devtools' }, {}]));
    expect(items.map((i) => [i.index, i.arch, i.ccModeDeclared])).toEqual([[0, 'HOPPER', 'devtools'], [1, 'HOPPER', 'on']]);
    expect(items[0]!.chain).toBe(items[1]!.chain);
    expect(items[0]!.chain).toHaveLength(3);
  });

  it.each([
    ['not JSON', '{'],
    ['not an array', '{}'],
    ['an empty array', '[]'],
    ['an unknown field', '[{"arch":"HOPPER","certificate":"","evidence":"","extra":1}]'],
    ['a bad cc_mode', '[{"arch":"HOPPER","certificate":"","evidence":"","cc_mode":"MAYBE"}]'],
    ['a non-string field', '[{"arch":"HOPPER","certificate":1,"evidence":""}]'],
    ['a certificate that is not PEM', '[{"arch":"HOPPER","certificate":"aGVsbG8=","evidence":"EeAB/w=="}]'],
  ])('refuses %s', (_w, text) => {
    expect(code(() => parseGpuEvidenceJson(text))).toMatch(/^NVIDIA_(EVIDENCE_INVALID|SPDM_)/);
  });
});
