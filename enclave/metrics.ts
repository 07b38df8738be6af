/**
 * Prometheus text exposition (format 0.0.4) for /metrics: counters, gauges and histograms with fixed label names.
 * Label values come only from the code (route names, status codes, error codes, worker ids and states), never from
 * a request payload, so a metric cannot leak a prompt (tested by searching the output). Shared by enclave/ and worker/.
 *
 * Scope: a metric is operator-only unless created with `{ scope: 'public' }`. A public metric must not move in a way
 * that tells whoever relays a request anything it does not already see on the wire (so: no per-worker or per-model
 * counter, no inner error code); `render('public')` leaves every other metric out (docs/operator.md §7.1).
 */
type Labels = Readonly<Record<string, string>>;
export type MetricScope = 'public' | 'operator';
export interface MetricOptions {
  /** Default 'operator': only the authenticated operator endpoint shows it. */
  readonly scope?: MetricScope;
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const key = (l: Labels) => Object.keys(l).sort().map((k) => `${k}="${esc(l[k]!)}"`).join(',');

abstract class Metric {
  readonly name: string;
  readonly help: string;
  scope: MetricScope = 'operator';
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  abstract render(): string[];
}

export class Counter extends Metric {
  readonly #v = new Map<string, { labels: Labels; n: number }>();
  inc(l: Labels = {}, by = 1): void {
    const k = key(l);
    const e = this.#v.get(k);
    if (e) e.n += by;
    else this.#v.set(k, { labels: { ...l }, n: by });
  }
  get(l: Labels = {}): number {
    return this.#v.get(key(l))?.n ?? 0;
  }
  /** Every label set with its count (windowed summaries diff two of these). */
  entries(): [Labels, number][] {
    return [...this.#v.values()].map((e) => [e.labels, e.n]);
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, e] of this.#v) out.push(`${this.name}${k ? `{${k}}` : ''} ${e.n}`);
    return out;
  }
}

export class Gauge extends Metric {
  readonly #v = new Map<string, number>();
  #collect: (() => readonly [Labels, number][]) | undefined;
  set(l: Labels, v: number): void {
    this.#v.set(key(l), v);
  }
  /** Computes the values at scrape time (e.g. workers by state). */
  collect(fn: () => readonly [Labels, number][]): void {
    this.#collect = fn;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const entries: [string, number][] = this.#collect ? this.#collect().map(([l, v]) => [key(l), v]) : [...this.#v];
    for (const [k, v] of entries) out.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
    return out;
  }
}

export class Histogram extends Metric {
  readonly #buckets: readonly number[];
  readonly #v = new Map<string, { counts: number[]; sum: number; n: number }>();
  constructor(name: string, help: string, buckets: readonly number[]) {
    super(name, help);
    this.#buckets = buckets;
  }
  observe(l: Labels, value: number): void {
    const k = key(l);
    let s = this.#v.get(k);
    if (!s) this.#v.set(k, (s = { counts: this.#buckets.map(() => 0), sum: 0, n: 0 }));
    for (let i = 0; i < this.#buckets.length; i++) if (value <= this.#buckets[i]!) s.counts[i]!++;
    s.sum += value;
    s.n++;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.#v) {
      const pre = k ? `${k},` : '';
      for (const [i, b] of this.#buckets.entries()) out.push(`${this.name}_bucket{${pre}le="${b}"} ${s.counts[i]}`);
      out.push(`${this.name}_bucket{${pre}le="+Inf"} ${s.n}`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ''} ${s.sum}`);
      out.push(`${this.name}_count${k ? `{${k}}` : ''} ${s.n}`);
    }
    return out;
  }
}

export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

export class Registry {
  readonly #m: Metric[] = [];
  counter(name: string, help: string, o: MetricOptions = {}): Counter {
    return this.#add(new Counter(name, help), o);
  }
  gauge(name: string, help: string, o: MetricOptions = {}): Gauge {
    return this.#add(new Gauge(name, help), o);
  }
  histogram(name: string, help: string, buckets: readonly number[] = LATENCY_BUCKETS, o: MetricOptions = {}): Histogram {
    return this.#add(new Histogram(name, help, buckets), o);
  }
  /** The counter registered under `name`, if any. */
  findCounter(name: string): Counter | undefined {
    const m = this.#m.find((x) => x.name === name);
    return m instanceof Counter ? m : undefined;
  }
  #add<M extends Metric>(m: M, o: MetricOptions): M {
    m.scope = o.scope ?? 'operator';
    this.#m.push(m);
    return m;
  }
  /** The exposition for `audience`: 'public' holds only metrics created public; 'operator' (the default) holds all. */
  render(audience: MetricScope = 'operator'): string {
    return `${this.#m.filter((m) => audience === 'operator' || m.scope === 'public').flatMap((m) => m.render()).join('\n')}\n`;
  }
}
