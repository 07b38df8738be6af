/** What the client commands share: policy and trust loading, claim summaries, progress lines on stderr. */
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import type { EnclaveSettings } from '../attestation/bundle.ts';
import type { BundleClaims } from '../attestation/bundle-verify.ts';
import { hex } from '../attestation/bytes.ts';
import { configError } from '../attestation/errors.ts';
import { trustDirFrom, trustFromDir, type TrustStore } from '../attestation/trust.ts';
import { type ClientPolicy, parseClientPolicy, simPolicyDoc } from '../client/policy.ts';
import type { Io } from './io.ts';

export async function loadPolicy(io: Io, file: string | undefined, allowSim: boolean): Promise<ClientPolicy> {
  if (!file) {
    if (!allowSim) throw configError('POLICY_REQUIRED', 'needs --policy FILE (the enclave measurements to accept), or --allow-sim for a simulated stack');
    return parseClientPolicy(simPolicyDoc(), 'sim policy');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(await io.readFile(file)));
  } catch (e) {
    if (e instanceof SyntaxError) throw configError('POLICY_INVALID', `${file} is not valid JSON: ${e.message}`, { cause: e });
    throw e;
  }
  return parseClientPolicy(doc, file);
}

/**
 * The pinned anchors of the trust directory, or undefined when it holds none: sim evidence needs none, and the verifier
 * refuses real evidence without them (TRUST_STORE_REQUIRED). A certificate that fails its pin (TRUST_PIN_MISMATCH) or
 * a file that cannot be read (TRUST_DIR_UNREADABLE) stops the command before it contacts anything.
 */
export async function loadTrust(io: Io): Promise<TrustStore | undefined> {
  return trustFromDir(trustDirFrom(io.env, homedir()), fsp);
}

/** The claims a person reads after a verification; with `settings`, the enclave's attested settings too (docs/protocol.md §12.3). */
export function claimsSummary(c: BundleClaims, settings?: EnclaveSettings | 'none'): Record<string, string> {
  return {
    platform: c.platform,
    ...(c.sim ? { sim: 'SIMULATED TEE: not backed by hardware' } : {}),
    measurement: c.cpu.measurement,
    nonce: hex(c.nonce),
    issuedAt: new Date(c.issuedAt).toISOString(),
    gpus: String(c.gpu.length),
    ...(settings === 'none' ? { settings: 'none bound in the evidence' } : {}),
    ...(settings && settings !== 'none'
      ? {
          allowSimWorkers: settings.allowSimWorkers ? 'true: workers with SIMULATED evidence are admitted' : 'false',
          workerPolicy: hex(settings.workerPolicy),
          openAccess: String(settings.openAccess),
          ledger: settings.ledger,
        }
      : {}),
  };
}

export function progress(io: Io, json: boolean): (s: string) => void {
  return (s) => {
    if (!json || io.env.GM_PROGRESS === '1') io.err(`${s}\n`);
  };
}

/** An ISO-8601 time flag (at least a full date). */
export function isoFlag(v: string | undefined, flag: string): Date | undefined {
  if (v === undefined) return undefined;
  const d = new Date(v);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(v)) throw configError('USAGE', `--${flag} ${JSON.stringify(v)} is not an ISO-8601 time`);
  return d;
}
