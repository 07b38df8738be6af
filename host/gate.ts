/**
 * The enclave gate (DESIGN.md §1, §7): the shim relays to the enclave only while the enclave it fronts verifies
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
  readonly now?: () => Date;
  readonly onChange?: (s: GateStatus) => void;
}

export class EnclaveGate {
  #status: GateStatus = { state: 'pending', checkedAt: undefined, report: undefined, summary: undefined, error: undefined };
  #timer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<GateStatus> | undefined;
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
    return this.#status;
  }

  /** First check, then one every intervalMs (unref'd: the gate never keeps the process alive). */
  async start(): Promise<GateStatus> {
    const s = await this.check();
    this.#timer = setInterval(() => void this.check(), this.#opts.intervalMs);
    this.#timer.unref?.();
    return s;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** Hono middleware in front of the relay routes: 503 with a stable code unless the gate is open. */
export function gateMiddleware(gate: EnclaveGate): MiddlewareHandler {
  return async (c, next) => {
    const s = gate.status;
    if (s.state === 'open') return next();
    const code = s.state === 'pending' ? 'HOST_GATE_PENDING' : 'HOST_GATE_CLOSED';
    const message = s.state === 'pending' ? 'the host has not yet verified the enclave' : `the enclave failed verification by the host (${s.error?.code ?? 'unknown'})`;
    c.header('retry-after', '5');
    return c.json({ error: { code, message, ...(s.error ? { cause: s.error.code } : {}) } }, 503);
  };
}
