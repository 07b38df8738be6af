/**
 * One error class for the whole project, with a stable `code` and a `kind` that tells the caller what to do
 * (after jose's `util/errors.ts` and tinfoil-js's grouping).
 *
 * - `config`: the caller's configuration or input is wrong (bad policy file, missing trust anchor, bad usage).
 * - `collateral`: vendor material needed for a decision is missing or stale; fetching it again may help.
 * - `rejected`: the evidence was examined and refused (bad signature, revoked, policy violation). Do not retry.
 * - `protocol`: a peer sent malformed, tampered or replayed protocol data.
 * - `unavailable`: a service or resource is temporarily unable to serve (capacity, upstream down, timeouts).
 */
import type { VerificationReport } from './report.ts';

export type ErrorKind = 'config' | 'collateral' | 'rejected' | 'protocol' | 'unavailable';

export interface GmErrorOptions {
  cause?: unknown;
  /** The per-check report up to and including the failing check, when a verifier produced one. */
  report?: VerificationReport;
}

export class GmError extends Error {
  override readonly name = 'GmError';
  readonly code: string;
  readonly kind: ErrorKind;
  report: VerificationReport | undefined;

  constructor(kind: ErrorKind, code: string, message: string, options: GmErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = code;
    this.report = options.report;
  }

  toJSON(): { code: string; kind: ErrorKind; message: string } {
    return { code: this.code, kind: this.kind, message: this.message };
  }
}

export const configError = (code: string, message: string, options?: GmErrorOptions): GmError =>
  new GmError('config', code, message, options);
export const collateralError = (code: string, message: string, options?: GmErrorOptions): GmError =>
  new GmError('collateral', code, message, options);
export const rejected = (code: string, message: string, options?: GmErrorOptions): GmError =>
  new GmError('rejected', code, message, options);
export const protocolError = (code: string, message: string, options?: GmErrorOptions): GmError =>
  new GmError('protocol', code, message, options);
export const unavailable = (code: string, message: string, options?: GmErrorOptions): GmError =>
  new GmError('unavailable', code, message, options);

export function isGmError(e: unknown, code?: string): e is GmError {
  return e instanceof GmError && (code === undefined || e.code === code);
}
