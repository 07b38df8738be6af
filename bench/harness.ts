/**
 * Benchmark harness. Every figure is printed beside a floor measured in the same run on the same machine (a bare
 * node:crypto primitive, or the direct path), with their ratio and the target ratio, never as a timed test.
 */
export interface BenchRow {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly floorName: string;
  readonly floor: number;
  /** value / floor, or floor / value for throughputs (as `ratioKind` says). */
  readonly ratio: number;
  readonly target: string;
  readonly ok: boolean;
  readonly note?: string;
}

/** Median wall time in microseconds of `fn` over `iterations` runs, after `warmup` runs. */
export async function medianUs(fn: () => unknown | Promise<unknown>, iterations = 200, warmup = 20): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const t: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const s = process.hrtime.bigint();
    await fn();
    t.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

/**
 * Medians of `fns` timed in alternating blocks of `block` calls each (after `warmup` blocks), so that load from
 * other processes on a shared machine falls on all of them alike while each block still runs warm.
 */
export async function interleavedMedians(fns: readonly (() => unknown)[], blocks: number, block: number, warmup = 2): Promise<number[]> {
  const samples = fns.map(() => [] as number[]);
  for (let r = 0; r < warmup + blocks; r++) {
    for (const [i, fn] of fns.entries()) {
      for (let k = 0; k < block; k++) {
        const t = process.hrtime.bigint();
        await fn();
        if (r >= warmup) samples[i]!.push(Number(process.hrtime.bigint() - t) / 1000);
      }
    }
  }
  return samples.map((s) => s.sort((a, b) => a - b)[s.length >> 1]!);
}

/** Latency-like: ratio = value / floor, ok when ratio <= max. */
export function atMost(name: string, value: number, unit: string, floorName: string, floor: number, max: number, note?: string): BenchRow {
  const ratio = value / floor;
  return { name, value, unit, floorName, floor, ratio, target: `ratio <= ${max}`, ok: ratio <= max, ...(note ? { note } : {}) };
}

/** Throughput-like: ratio = value / floor, ok when ratio >= min. */
export function atLeast(name: string, value: number, unit: string, floorName: string, floor: number, min: number, note?: string): BenchRow {
  const ratio = value / floor;
  return { name, value, unit, floorName, floor, ratio, target: `ratio >= ${min}`, ok: ratio >= min, ...(note ? { note } : {}) };
}

export function printRows(title: string, rows: readonly BenchRow[]): void {
  console.log(`\n## ${title}`);
  for (const r of rows) {
    console.log(`${r.ok ? 'ok  ' : 'MISS'} ${r.name}: ${r.value.toFixed(2)} ${r.unit} | floor ${r.floorName}: ${r.floor.toFixed(2)} ${r.unit} | ratio ${r.ratio.toFixed(3)} (${r.target})${r.note ? ` | ${r.note}` : ''}`);
  }
}
