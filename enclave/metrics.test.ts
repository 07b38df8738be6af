/** Request-path counters (`Metrics.tally`): what they count is what the exposition and the counter's readers see. */
import { describe, expect, it } from 'vitest';
import { Histogram, Registry } from 'prom-client';
import { LATENCY_BUCKETS, Metrics } from './metrics.ts';

describe('Metrics.tally', () => {
  it('counts each label set, shows it in its scope with the labels in name order, and is the counter findCounter gives', async () => {
    const m = new Metrics({ version: 't' });
    const t = m.tally('t_requests_total', 'requests', { labels: ['route', 'status'], scope: 'public' });
    t.inc('ohttp', '200');
    t.inc('ohttp', '200');
    t.inc('ohttp', '400');
    t.inc('keys', '200');
    const pub = await m.render('public');
    expect(pub).toContain('# TYPE t_requests_total counter');
    expect(pub).toContain('t_requests_total{route="ohttp",status="200"} 2');
    expect(pub).toContain('t_requests_total{route="ohttp",status="400"} 1');
    expect(pub).toContain('t_requests_total{route="keys",status="200"} 1');
    // Read twice (each read copies the counts in afresh): the same values, not doubled.
    const values = async () => (await m.findCounter('t_requests_total')!.get()).values.map((v) => `${v.labels.route} ${v.labels.status} ${v.value}`).sort();
    expect(await values()).toEqual(['keys 200 1', 'ohttp 200 2', 'ohttp 400 1']);
    expect(await values()).toEqual(['keys 200 1', 'ohttp 200 2', 'ohttp 400 1']);
  });

  it('keeps an operator tally out of the public view; one label works alone; values are not confused across labels', async () => {
    const m = new Metrics({ version: 't' });
    const t = m.tally('t_outcomes_total', 'outcomes', { labels: ['outcome'] });
    const u = m.tally('t_pairs_total', 'pairs', { labels: ['a', 'b'] });
    t.inc('ok');
    u.inc('x', 'yz');
    u.inc('xy', 'z');
    expect(await m.render('public')).not.toContain('t_outcomes_total');
    const op = await m.render('operator');
    expect(op).toContain('t_outcomes_total{outcome="ok"} 1');
    expect(op).toContain('t_pairs_total{a="x",b="yz"} 1');
    expect(op).toContain('t_pairs_total{a="xy",b="z"} 1');
  });
});

describe('Metrics.histogram', () => {
  /** The same observations into prom-client's own Histogram, in a registry of its own: the reference exposition. */
  async function reference(name: string, labels: string[], observations: [Record<string, string>, number][], buckets?: number[]) {
    const r = new Registry();
    const h = new Histogram<string>({ name, help: 'h', labelNames: labels, buckets: buckets ?? [...LATENCY_BUCKETS], registers: [r] });
    for (const [l, v] of observations) h.observe(l, v);
    return { text: await r.metrics(), json: await r.getMetricsAsJSON() };
  }
  /** One metric's lines, from its HELP to the line before the next metric (or a blank line, or the end). */
  const block = (text: string, name: string) => {
    const lines = text.split('\n');
    const from = lines.findIndex((l) => l.startsWith(`# HELP ${name} `));
    if (from < 0) return undefined;
    const to = lines.findIndex((l, i) => i > from && (l === '' || l.startsWith('# HELP ')));
    return lines.slice(from, to < 0 ? undefined : to).join('\n');
  };

  // Values on bucket bounds, between them, past the largest, zero and negative; label sets first seen in turn.
  const samples: [Record<string, string>, number][] = [
    [{ route: 'ohttp' }, 0.001], [{ route: 'keys' }, 0.0004], [{ route: 'ohttp' }, 0.0031], [{ route: 'ohttp' }, 61],
    [{ route: 'keys' }, 0], [{ route: 'ohttp' }, 2.5], [{ route: 'health' }, -1], [{ route: 'ohttp' }, 0.1 + 0.2],
  ];

  it('writes the exposition prom-client writes for the same observations, with and without labels', async () => {
    const m = new Metrics({ version: 't' });
    const h = m.histogram('t_duration_seconds', 'h', { labels: ['route'], scope: 'public' });
    const plain = m.histogram('t_plain_seconds', 'h');
    const custom = m.histogram('t_custom_seconds', 'h', { buckets: [1, 5] });
    const ref = await reference('t_duration_seconds', ['route'], samples);
    // Before any observation: nothing for the labelled one, the zero series for the one without labels.
    expect(block(await m.render(), 't_plain_seconds')).toBe(block((await reference('t_plain_seconds', [], [])).text, 't_plain_seconds'));
    expect(block(await m.render(), 't_duration_seconds')).toBe(block((await reference('t_duration_seconds', ['route'], [])).text, 't_duration_seconds'));
    for (const [l, v] of samples) {
      h.observe(l, v);
      plain.observe({}, v);
      custom.observe({}, v);
    }
    expect(block(await m.render('public'), 't_duration_seconds')).toBe(block(ref.text, 't_duration_seconds'));
    expect(block(await m.render(), 't_duration_seconds')).toBe(block(ref.text, 't_duration_seconds'));
    expect(block(await m.render(), 't_plain_seconds')).toBe(block((await reference('t_plain_seconds', [], samples.map(([, v]) => [{}, v]))).text, 't_plain_seconds'));
    expect(block(await m.render(), 't_custom_seconds')).toBe(block((await reference('t_custom_seconds', [], samples.map(([, v]) => [{}, v]), [1, 5])).text, 't_custom_seconds'));
    // An operator histogram stays out of the public view.
    expect(await m.render('public')).not.toContain('t_plain_seconds');
    expect(block(await m.render(), 't_duration_seconds')).toContain('t_duration_seconds_bucket{le="0.001",route="ohttp"} 1');
  });

  it('refuses what prom-client refuses: a value that is not a finite number, a label it was not declared with', () => {
    const m = new Metrics({ version: 't' });
    const h = m.histogram('t_refusing_seconds', 'h', { labels: ['route'] });
    expect(() => h.observe({ route: 'a' }, Number.NaN)).toThrow(TypeError);
    expect(() => h.observe({ route: 'a' }, Number.POSITIVE_INFINITY)).toThrow(TypeError);
    expect(() => h.observe({ route: 'a', other: 'b' } as never, 1)).toThrow(/not included/);
    expect(() => m.histogram('t_le_seconds', 'h', { labels: ['le'] })).toThrow();
  });
});
