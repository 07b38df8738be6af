/**
 * Live measurements per (worker, model) (docs/design.md §6 "tracks live measurements per worker (TTFT, tokens/s,
 * errors, in-flight)"): exponentially weighted moving averages updated by the dispatcher through a `Lease`, which
 * also keeps the in-flight count exact (released once, whatever path the request ends on). One LiveStats serves
 * all of a worker's offers for the same model: they share its GPUs, so they share its in-flight count.
 *
 * These are measurements, not money: they are floats. Until the first sample the advertised figures stand in.
 * A worker whose error EWMA exceeds `unhealthyErrorRate` after `minSamples` requests is excluded for
 * `cooldownMs` after its last error (a circuit breaker), then tried again.
 */
export interface StatsConfig {
  /** EWMA weight of a new sample, 0 < alpha <= 1. */
  readonly alpha: number;
  readonly unhealthyErrorRate: number;
  readonly minSamples: number;
  readonly cooldownMs: number;
}

export const DEFAULT_STATS_CONFIG: StatsConfig = { alpha: 0.2, unhealthyErrorRate: 0.5, minSamples: 4, cooldownMs: 30_000 };

export class LiveStats {
  ttftMs: number;
  tokensPerSecond: number;
  errorRate = 0;
  samples = 0;
  ttftSamples = 0;
  tpsSamples = 0;
  inFlight = 0;
  lastErrorAt = -Infinity;
  /** Unix ms until which the offer is demoted out of selection for over-reporting usage (enclave/market/metering.ts). */
  inflatedUntil = 0;
  /** Requests whose reported usage was over the enclave's bound beyond the tolerance. */
  inflations = 0;
  readonly #cfg: StatsConfig;

  constructor(advertisedTtftMs: number, advertisedTokensPerSecond: number, cfg: StatsConfig = DEFAULT_STATS_CONFIG) {
    this.ttftMs = advertisedTtftMs;
    this.tokensPerSecond = advertisedTokensPerSecond;
    this.#cfg = cfg;
  }

  /** The first measured sample replaces the advertised figure; later ones are averaged in. */
  recordTtft(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) return;
    this.ttftMs = this.ttftSamples === 0 ? ms : this.ttftMs + this.#cfg.alpha * (ms - this.ttftMs);
    this.ttftSamples++;
  }

  recordThroughput(tokens: number, decodeMs: number): void {
    if (!(tokens > 0) || !(decodeMs > 0)) return;
    const tps = (tokens * 1000) / decodeMs;
    this.tokensPerSecond = this.tpsSamples === 0 ? tps : this.tokensPerSecond + this.#cfg.alpha * (tps - this.tokensPerSecond);
    this.tpsSamples++;
  }

  recordOutcome(ok: boolean, now: number): void {
    this.errorRate += this.#cfg.alpha * ((ok ? 0 : 1) - this.errorRate);
    this.samples++;
    if (!ok) this.lastErrorAt = now;
  }

  /** A worker fault (an answer that breaks the protocol): excluded at once, for the whole cooldown. */
  demote(now: number): void {
    this.recordOutcome(false, now);
    this.samples = Math.max(this.samples, this.#cfg.minSamples);
    this.errorRate = 1;
  }

  unhealthy(now: number): boolean {
    return this.samples >= this.#cfg.minSamples && this.errorRate > this.#cfg.unhealthyErrorRate && now - this.lastErrorAt < this.#cfg.cooldownMs;
  }
}

/** One dispatch's hold on a (worker, model) slot; `firstToken` then `succeeded`/`failed` (idempotent end). */
export class Lease {
  readonly #stats: LiveStats;
  readonly #startedAt: number;
  #firstTokenAt: number | undefined;
  #ended = false;

  constructor(stats: LiveStats, startedAt: number) {
    this.#stats = stats;
    this.#startedAt = startedAt;
    stats.inFlight++;
  }

  get firstTokenSent(): boolean {
    return this.#firstTokenAt !== undefined;
  }

  /** Call when the first token (or the whole non-streamed answer) arrives. */
  firstToken(now: number): void {
    if (this.#firstTokenAt !== undefined || this.#ended) return;
    this.#firstTokenAt = now;
    this.#stats.recordTtft(now - this.#startedAt);
  }

  succeeded(outputTokens: number, now: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stats.inFlight--;
    if (this.#firstTokenAt === undefined) this.firstTokenAtEnd(now);
    this.#stats.recordThroughput(outputTokens, now - (this.#firstTokenAt ?? this.#startedAt));
    this.#stats.recordOutcome(true, now);
  }

  failed(now: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stats.inFlight--;
    this.#stats.recordOutcome(false, now);
  }

  /** The worker's answer broke the protocol: ends the lease and demotes the worker (LiveStats.demote). */
  faulted(now: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stats.inFlight--;
    this.#stats.demote(now);
  }

  /** Abandoned by the client: frees the slot without counting against the worker. */
  cancelled(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stats.inFlight--;
  }

  private firstTokenAtEnd(now: number): void {
    this.#firstTokenAt = now;
    this.#stats.recordTtft(now - this.#startedAt);
  }
}
