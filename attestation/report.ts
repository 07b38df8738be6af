/**
 * The verification report (docs/design.md §3): one row per check, `pass` / `fail` / `skip`, what was compared and
 * against which anchor. Verifiers record every check through a `Checks` recorder so the report and the thrown
 * error always agree: a failing check records its row and throws a GmError carrying the report so far.
 */
import { GmError } from './errors.ts';

export type CheckStatus = 'pass' | 'fail' | 'skip';

export interface CheckRow {
  /** Stable identifier, e.g. `snp.report.signature`. */
  readonly id: string;
  readonly status: CheckStatus;
  /** What was checked, in words an auditor reads. */
  readonly what: string;
  /** The anchor or reference the value was compared against (pinned root, policy field, collateral). */
  readonly against?: string;
  /** Outcome detail: the error message on failure, the reason on skip, the verified value on pass. */
  readonly detail?: string;
  /** The error code on failure. */
  readonly code?: string;
}

export interface VerificationReport {
  readonly subject: string;
  readonly verified: boolean;
  readonly checks: readonly CheckRow[];
}

export class Checks {
  readonly #rows: CheckRow[] = [];
  readonly subject: string;

  constructor(subject: string) {
    this.subject = subject;
  }

  /** Runs `fn`; records pass with its detail, or fail with the error's code and rethrows it with the report. */
  async run<T>(id: string, what: string, against: string | undefined, fn: () => T | Promise<T>, detail?: (v: T) => string): Promise<T> {
    try {
      const v = await fn();
      this.pass(id, what, against, detail?.(v));
      return v;
    } catch (e) {
      throw this.failed(id, what, against, e);
    }
  }

  /** Synchronous variant of `run`. */
  runSync<T>(id: string, what: string, against: string | undefined, fn: () => T, detail?: (v: T) => string): T {
    try {
      const v = fn();
      this.pass(id, what, against, detail?.(v));
      return v;
    } catch (e) {
      throw this.failed(id, what, against, e);
    }
  }

  pass(id: string, what: string, against?: string, detail?: string): void {
    this.#rows.push(row(id, 'pass', what, against, detail));
  }

  skip(id: string, what: string, reason: string, against?: string): void {
    this.#rows.push(row(id, 'skip', what, against, reason));
  }

  /** Records a failing row without throwing (used by policy validation, which reports every violation). */
  fail(id: string, what: string, against: string | undefined, code: string, detail: string): void {
    this.#rows.push({ ...row(id, 'fail', what, against, detail), code });
  }

  /** Records the failure of `e` and returns it (as a GmError) with the report attached, ready to throw. */
  failed(id: string, what: string, against: string | undefined, e: unknown): GmError {
    const err = e instanceof GmError ? e : new GmError('rejected', 'INTERNAL_CHECK_ERROR', `check ${id} failed unexpectedly`, { cause: e });
    this.fail(id, what, against, err.code, err.message);
    err.report = this.report();
    return err;
  }

  get failures(): readonly CheckRow[] {
    return this.#rows.filter((r) => r.status === 'fail');
  }

  report(): VerificationReport {
    return { subject: this.subject, verified: this.#rows.every((r) => r.status !== 'fail'), checks: [...this.#rows] };
  }
}

function row(id: string, status: CheckStatus, what: string, against: string | undefined, detail: string | undefined): CheckRow {
  const r: { -readonly [K in keyof CheckRow]: CheckRow[K] } = { id, status, what };
  if (against !== undefined) r.against = against;
  if (detail !== undefined) r.detail = detail;
  return r;
}
