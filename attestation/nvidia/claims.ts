/**
 * The claims gm derives from one GPU's evidence, whichever way it was verified (locally from the SPDM report, or
 * from an NRAS EAT): the one shape `validate.ts` checks and the router records.
 */
import type { CcModeDeclared } from './evidence.ts';

export interface GpuClaims {
  /** Position of the GPU in the evidence list. */
  readonly gpu: number;
  readonly source: 'local' | 'nras';
  /** HOPPER, BLACKWELL, ... as the evidence names it (NRAS: from its arch check and hwmodel). */
  readonly arch: string;
  /** The device certificate's issuer CN, e.g. `GH100 A01 GSP BROM` (NRAS `hwmodel`). */
  readonly hwmodel: string | undefined;
  /** The signing leaf's serial number, hex (NRAS `ueid` is its decimal form). */
  readonly ueid: string | undefined;
  readonly driverVersion: string | undefined;
  readonly vbiosVersion: string | undefined;
  readonly fwid: string | undefined;
  /** The request nonce the GPU signed, hex. */
  readonly nonce: string;
  /** true: equals the caller's expected nonce; undefined: no expected nonce was given (freshness unproven). */
  readonly nonceMatch: boolean | undefined;
  /** Measurement block index (1-based, as in the report) → value hex. */
  readonly measurements: Readonly<Record<number, string>>;
  /** true: every active RIM index matched; false: some did not; undefined: no RIM comparison was made. */
  readonly measurementsMatch: boolean | undefined;
  /** Indices (1-based, report numbering) whose value matched no RIM alternative. */
  readonly measurementMismatches: readonly number[];
  /** Set when the RIMs were asked from a collateral getter and could not be had: why (no comparison was made). */
  readonly rimUnavailable?: string;
  /** Why an OCSP status could not be obtained (the source failed), when that is why `ocsp` is `skipped`. */
  readonly ocspUnavailable?: string;
  /**
   * CC mode. The Hopper SPDM report has no CC-mode field: locally this is the worker's NVML reading carried in the
   * evidence envelope (`cc_mode`), trustworthy only as far as the worker's own CPU TEE evidence binds that envelope.
   */
  readonly ccMode: CcModeDeclared | undefined;
  /** NRAS `dbgstat` != disabled; undefined when the evidence does not say. */
  readonly debug: boolean | undefined;
  /** NRAS `secboot`; undefined when the evidence does not say. */
  readonly secureBoot: boolean | undefined;
  /** `good` when every certificate of the device chain (and of the RIM signing chains used) had a verified good OCSP status; else `skipped`. */
  readonly ocsp: 'good' | 'skipped';
  /** Set when the evidence was verified against a sim root the caller chose to trust. */
  readonly sim: boolean;
  /** When the evidence was issued (NRAS `iat`) or collected (caller-supplied), for the age check. */
  readonly issuedAt: Date | undefined;
}
