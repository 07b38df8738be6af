/**
 * Prometheus text exposition (format 0.0.4) for /metrics: counters, gauges and histograms with fixed label names.
 * Label values come only from the code (route names, status codes, error codes, worker ids and states), never from
 * a request payload, so a metric cannot leak a prompt (tested by searching the output). Shared by enclave/ and worker/.
 */
type Labels = Readonly<Record<string, string>>;

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const key = (l: Labels) => Object.keys(l).sort().map((k) => `${k}="${esc(l[k]!)}"`).join(',');

abstract class Metric {
  readonly name: string;
  readonly help: string;
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  abstract render(): string[];
}

export class Counter extends Metric {
  readonly #v = new Map<string, number>();
  inc(l: Labels = {}, by = 1): void {
    const k = key(l);
    this.#v.set(k, (this.#v.get(k) ?? 0) + by);
  }
  get(l: Labels = {}): number {
    return this.#v.get(key(l)) ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.#v) out.push(`${this.name}${k ? `{${k}}` : ''} ${v}`);
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
      this.#buckets.forEach((b, i) => out.push(`${this.name}_bucket{${pre}le="${b}"} ${s.counts[i]}`));
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
  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.#add(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets: readonly number[] = LATENCY_BUCKETS): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }
  #add<M extends Metric>(m: M): M {
    this.#m.push(m);
    return m;
  }
  render(): string {
    return `${this.#m.flatMap((m) => m.render()).join('\n')}\n`;
  }
}
