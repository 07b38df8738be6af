/**
 * The enclave gate (docs/design.md §1, §7): the shim relays to the enclave only while the enclave it fronts verifies
 * against the operator's policy, checked before the relay opens and then periodically. A failed or unreachable
 * check closes the gate: relayed paths answer 503 with a stable code until a later check passes. The gate is an
 * operator's safeguard, not the client's trust: clients verify the enclave themselves end to end.
 */
import type { MiddlewareHandler } from 'hono';
import { GmError } from '../attestation/errors.ts';
import type { VerificationReport } from '../attestation/report.ts';

export type GateState = 'pending' | 'open' | 'closed';

export interface GateCheckResult {
  readonly report: VerificationReport;
  /** Short facts for the status page (platform, measurement, sim). */
  readonly summary: Readonly<Record<string, string>>;
  /** The attested application/ohttp-keys bytes (a replica set routes by their key ids). */
  readonly keyConfigs?: Uint8Array;
}

export interface GateStatus {
  readonly state: GateState;
  readonly checkedAt: string | undefined;
  readonly report: VerificationReport | undefined;
  readonly summary: Readonly<Record<string, string>> | undefined;
  readonly error: { readonly code: string; readonly message: string } | undefined;
}

export interface GateOptions {
  /** Fetches fresh evidence from the enclave (own nonce) and verifies it against the operator's policy; throws on failure. */
  readonly check: () => Promise<GateCheckResult>;
  readonly intervalMs: number;
  /**
   * While the gate is not open, the next check comes sooner: after `retryMs` (default 1 s), doubling per failed check
   * up to `intervalMs`. An enclave that was not up yet when the shim started is relayed within seconds of answering.
   */
  readonly retryMs?: number;
  readonly now?: () => Date;
  readonly onChange?: (s: GateStatus) => void;
}

/** What the relay and the status page need of a gate: one enclave's (EnclaveGate) or a replica set's (host/replicas.ts). */
export interface HostGate {
  readonly status: GateStatus;
  retryAfterSeconds(): number;
  check(): Promise<GateStatus>;
  start(): Promise<GateStatus>;
  stop(): void;
}

export class EnclaveGate implements HostGate {
  #status: GateStatus = { state: 'pending', checkedAt: undefined, report: undefined, summary: undefined, error: undefined };
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<GateStatus> | undefined;
  #failures = 0;
  #nextAt: number | undefined;
  #started = false;
  readonly #opts: GateOptions;

  constructor(opts: GateOptions) {
    this.#opts = opts;
  }

  get status(): GateStatus {
    return this.#status;
  }

  /** One check now (concurrent callers share it). */
  check(): Promise<GateStatus> {
    this.#running ??= this.#check().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #check(): Promise<GateStatus> {
    const checkedAt = (this.#opts.now?.() ?? new Date()).toISOString();
    const before = this.#status.state;
    try {
      const r = await this.#opts.check();
      this.#status = { state: 'open', checkedAt, report: r.report, summary: r.summary, error: undefined };
    } catch (e) {
      const err = e instanceof GmError ? { code: e.code, message: e.message } : { code: 'HOST_GATE_CHECK_FAILED', message: (e as Error).message };
      this.#status = { state: 'closed', checkedAt, report: e instanceof GmError ? e.report : undefined, summary: this.#status.summary, error: err };
    }
    if (this.#status.state !== before) this.#opts.onChange?.(this.#status);
    if (this.#started) this.#schedule(this.#status);
    return this.#status;
  }

  /** First check, then one every intervalMs, sooner while not open (unref'd: the gate never keeps the process alive). */
  async start(): Promise<GateStatus> {
    this.#started = true;
    return this.check();
  }

  /** Seconds until the next scheduled check (what a 503 tells clients to wait), at least 1. */
  retryAfterSeconds(): number {
    if (this.#nextAt === undefined) return 5;
    return Math.max(1, Math.ceil((this.#nextAt - this.#nowMs()) / 1000));
  }

  #nowMs(): number {
    return (this.#opts.now?.() ?? new Date()).getTime();
  }

  /** After every check (scheduled or not): the next one in intervalMs when open, sooner (backing off) when not. */
  #schedule(s: GateStatus): void {
    if (this.#timer) clearTimeout(this.#timer);
    const { intervalMs } = this.#opts;
    this.#failures = s.state === 'open' ? 0 : this.#failures + 1;
    const delay = s.state === 'open' ? intervalMs : Math.min(intervalMs, (this.#opts.retryMs ?? 1000) * 2 ** Math.min(this.#failures - 1, 30));
    this.#nextAt = this.#nowMs() + delay;
    this.#timer = setTimeout(() => void this.check(), delay);
    this.#timer.unref?.();
  }

  stop(): void {
    this.#started = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#nextAt = undefined;
  }
}

/** Hono middleware in front of the relay routes: 503 with a stable code unless the gate is open. */
export function gateMiddleware(gate: HostGate): MiddlewareHandler {
  return async (c, next) => {
    const s = gate.status;
    if (s.state === 'open') return next();
    const code = s.state === 'pending' ? 'HOST_GATE_PENDING' : 'HOST_GATE_CLOSED';
    const message = s.state === 'pending' ? 'the host has not yet verified the enclave' : `the enclave failed verification by the host (${s.error?.code ?? 'unknown'})`;
    c.header('retry-after', String(gate.retryAfterSeconds()));
    return c.json({ error: { code, message, ...(s.error ? { cause: s.error.code } : {}) } }, 503);
  };
}
