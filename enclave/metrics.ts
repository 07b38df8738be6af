/**
 * Metrics of every gm service (enclave, worker, host) in the Prometheus text exposition format 0.0.4, through
 * prom-client: one way to declare and serve metrics, `# HELP` and `# TYPE` on each, the process_* and nodejs_*
 * default metrics, `gm_build_info{version} 1`, and every error response counted in `gm_errors_total{code}`.
 * Label values come only from the code (route names, statuses, error codes, worker ids, states), never from a
 * request payload, so a metric cannot leak a prompt or a model name.
 *
 * Audiences (docs/operator.md §7.1): a metric is operator-only unless created with `{ scope: 'public' }`. A public
 * metric must not move in a way that tells whoever relays a request anything it does not already see on the wire
 * (no per-worker or per-model counter, no inner error code). The process metrics are operator-only too: heap, GC and
 * event-loop timings inside the enclave move with each request's work. `render('public')` leaves all of those out.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { packageVersion } from './version.ts';

export type MetricScope = 'public' | 'operator';
export type Labels<L extends string> = Partial<Record<L, string>>;

export interface MetricOptions<L extends string> {
  /** The label names the metric may carry (prom-client refuses any other). */
  readonly labels?: readonly L[];
  /** Default 'operator': only the authenticated operator endpoint shows it. */
  readonly scope?: MetricScope;
}

export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * `gm_errors_total{code}`. `sent` counts an error the peer received in clear (its status is on the wire anyway);
 * `sealed` counts one answered inside the encryption, which only the operator endpoint shows.
 */
export interface ErrorCounter {
  sent(code: string): void;
  sealed(code: string): void;
}

// The process metrics are per process, not per service: collected once, shown by every service's operator view.
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** A request-path histogram (`Metrics.histogram`): `observe` takes the label values by name, as prom-client's does. */
export interface Timing<L extends string> {
  observe(labels: Labels<L>, value: number): void;
}

/** One label set's observations: counts per bucket (not cumulative), their number and their sum. */
interface Series {
  readonly labels: Record<string, string>;
  readonly counts: Float64Array;
  count: number;
  sum: number;
}

/**
 * The histogram behind `Metrics.histogram`, registered in prom-client's registries as a metric of its own: its
 * `get`/`getForPromString` answer the values prom-client's Histogram would (per label set in the order first seen:
 * the cumulative `_bucket` series by `le`, `+Inf`, `_sum`, `_count`), so the registry writes the same text.
 */
class FoldedHistogram<L extends string> implements Timing<L> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: readonly string[];
  readonly #bounds: readonly number[];
  #series = new Map<string, Series>();
  constructor(name: string, help: string, labelNames: readonly string[], bounds: readonly number[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.#bounds = bounds;
    this.reset();
  }

  observe(labels: Labels<L>, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const n = this.labelNames;
    const l = labels as Record<string, string | undefined>;
    const key = n.length === 0 ? '' : n.length === 1 ? (l[n[0]!] ?? '') : n.map((x) => l[x] ?? '').join('\u0000');
    let s = this.#series.get(key);
    if (!s) {
      for (const k in l) if (!n.includes(k)) throw new Error(`Added label "${k}" is not included in initial labelset: ${JSON.stringify(n)}`);
      s = { labels: { ...l } as Record<string, string>, counts: new Float64Array(this.#bounds.length), count: 0, sum: 0 };
      this.#series.set(key, s);
    }
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    if (i < b.length) s.counts[i]! += 1;
    s.count += 1;
    s.sum += value;
  }

  /** As prom-client: a histogram without labels shows its zero series before any observation; one with labels, none. */
  reset(): void {
    this.#series = new Map();
    if (this.labelNames.length === 0) this.#series.set('', { labels: {}, counts: new Float64Array(this.#bounds.length), count: 0, sum: 0 });
  }

  async getForPromString() {
    const name = this.name;
    const values: { labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number; metricName: string; exemplar?: null }[] = [];
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.counts[i]!;
        values.push({ labels: { le: this.#bounds[i]! }, sharedLabels: s.labels, value: acc, metricName: `${name}_bucket`, exemplar: null });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: `${name}_bucket`, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${name}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${name}_count` });
    }
    return { name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** The JSON form (`Registry.getMetricsAsJSON`): each value's labels and its label set in one object. */
  async get() {
    const m = await this.getForPromString();
    return { ...m, values: m.values.map(({ sharedLabels, labels, ...v }) => ({ ...v, labels: { ...labels, ...sharedLabels } })) };
  }
}

/** A request-path counter (`Metrics.tally`): `inc` takes the label values in the order the labels were named. */
export interface Tally {
  inc(a: string, b?: string): void;
}

export class Metrics {
  readonly #public = new Registry();
  readonly #operator = new Registry();
  readonly #counters = new Map<string, Counter<string>>();

  constructor(o: { readonly version?: string } = {}) {
    processMetrics(); // started with the first service, so GC and event-loop figures cover the whole run
    this.gauge('gm_build_info', 'Always 1; the version label names the gm release serving', { labels: ['version'], scope: 'public' }).set({ version: o.version ?? packageVersion() }, 1);
  }

  #registers(scope: MetricScope | undefined): Registry[] {
    return scope === 'public' ? [this.#public, this.#operator] : [this.#operator];
  }

  /** A counter; `collect` reads totals kept elsewhere at scrape time (e.g. a cache's own hit counts). */
  counter<L extends string = never>(name: string, help: string, o: MetricOptions<L> & { readonly collect?: () => readonly (readonly [Labels<L>, number])[] } = {}): Counter<L> {
    const collect = o.collect;
    const c = new Counter<L>({
      name, help, labelNames: o.labels ?? [], registers: this.#registers(o.scope),
      ...(collect ? {
        collect(this: Counter<L>) {
          this.reset();
          for (const [l, v] of collect()) this.inc(l, v);
        },
      } : {}),
    });
    this.#counters.set(name, c as Counter<string>);
    return c;
  }

  /**
   * A counter for the request path, with one or two labels (in name order): each label set's count is a plain
   * number found by its values, copied into the exposition at scrape time, so an increment validates and hashes no
   * label object. It is the counter `counter` would make (same name, help, labels and scope; `findCounter` finds it).
   */
  tally<L extends string>(name: string, help: string, o: MetricOptions<L> & { readonly labels: readonly [L] | readonly [L, L] }): Tally {
    const slots = new Map<string, { readonly labels: Labels<L>; n: number }>();
    const names = o.labels;
    this.counter<L>(name, help, { ...o, collect: () => [...slots.values()].map((x) => [x.labels, x.n] as const) });
    return {
      inc(a, b) {
        const key = b === undefined ? a : `${a}\u0000${b}`;
        const slot = slots.get(key);
        if (slot) slot.n++;
        else slots.set(key, { labels: (b === undefined ? { [names[0]]: a } : { [names[0]]: a, [names[1]!]: b }) as Labels<L>, n: 1 });
      },
    };
  }

  /** A gauge; `collect` computes its values at scrape time (e.g. workers by state). */
  gauge<L extends string = never>(name: string, help: string, o: MetricOptions<L> & { readonly collect?: () => readonly (readonly [Labels<L>, number])[] } = {}): Gauge<L> {
    const collect = o.collect;
    return new Gauge<L>({
      name, help, labelNames: o.labels ?? [], registers: this.#registers(o.scope),
      ...(collect ? {
        collect(this: Gauge<L>) {
          this.reset();
          for (const [l, v] of collect()) this.set(l, v);
        },
      } : {}),
    });
  }

  /**
   * A histogram for the request path: the one prom-client would expose (same name, help, labels, buckets and
   * scope, the same exposition), but an observation adds to plain per-bucket counts found by its label values,
   * made cumulative only at scrape time, so it validates and hashes no label object.
   */
  histogram<L extends string = never>(name: string, help: string, o: MetricOptions<L> & { readonly buckets?: readonly number[] } = {}): Timing<L> {
    const names = o.labels ?? [];
    // prom-client checks the declaration (name, label names, buckets) and is the reference the exposition follows.
    const reference = new Histogram<L>({ name, help, labelNames: names, buckets: [...(o.buckets ?? LATENCY_BUCKETS)], registers: [] });
    const t = new FoldedHistogram<L>(name, help, names, (reference as unknown as { upperBounds: readonly number[] }).upperBounds);
    for (const r of this.#registers(o.scope)) r.registerMetric(t as unknown as Histogram<L>);
    return t;
  }

  /** The counter created under `name`, if any (e.g. the dispatch summary reads gm_dispatch_total). */
  findCounter(name: string): Counter<string> | undefined {
    return this.#counters.get(name);
  }

  /**
   * `gm_errors_total{code}`, counted by code alone (never by model, worker or account). When the whole
   * exposition is one audience (worker, host) and `split` is false: sealed errors count in the one counter too.
   */
  errors(o: { readonly split: boolean }): ErrorCounter {
    const help = 'Error responses by code (the public view: only those sent in clear; the operator view: also those answered inside the encryption)';
    const all = new Counter<'code'>({ name: 'gm_errors_total', help, labelNames: ['code'], registers: [this.#operator] });
    if (!o.split) return { sent: (code) => all.inc({ code }), sealed: (code) => all.inc({ code }) };
    const sent = new Counter<'code'>({ name: 'gm_errors_total', help, labelNames: ['code'], registers: [this.#public] });
    return {
      sent: (code) => {
        sent.inc({ code });
        all.inc({ code });
      },
      sealed: (code) => all.inc({ code }),
    };
  }

  /** The exposition for `audience`: 'public' holds only metrics created public; 'operator' (the default) holds all. */
  async render(audience: MetricScope = 'operator'): Promise<string> {
    if (audience === 'public') return this.#public.metrics();
    const [own, proc] = await Promise.all([this.#operator.metrics(), processMetrics().metrics()]);
    return `${own}${own.endsWith('\n') || own === '' ? '' : '\n'}${proc}`;
  }
}
