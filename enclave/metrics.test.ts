/** Request-path counters (`Metrics.tally`): what they count is what the exposition and the counter's readers see. */
import { describe, expect, it } from 'vitest';
import { Metrics } from './metrics.ts';

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
