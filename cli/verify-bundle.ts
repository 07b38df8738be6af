/**
 * `gm verify bundle FILE`: verifies a saved enclave evidence bundle offline (docs/design.md §4: CBOR, or its JSON view)
 * against a policy. The REPORT_DATA binding is recomputed for the bundle's own nonce, or for `--nonce HEX` when the
 * auditor knows the nonce that was asked for (then a bundle made for another nonce is refused). Evidence age is
 * checked only when asked (`--max-age SECONDS`, `--now ISO`): a saved bundle is audited after the fact.
 * `--collateral SHIM_URL` completes missing collateral from a host shim's cache (SEV-SNP: VCEK, chain, AMD's CRL;
 * TDX: TCB info, QE identity, CRLs for the quote's FMSPC), so an auditor can verify with no route to the vendors;
 * it is verified against the vendor roots like the rest (client/collateral.ts).
 */
import { bundleFromJson, encodeBundle } from '../attestation/bundle.ts';
import { fromHex } from '../attestation/bytes.ts';
import { configError, GmError } from '../attestation/errors.ts';
import { decodeBundle } from '../attestation/bundle.ts';
import { verifyEnclaveBundle } from '../client/attest.ts';
import type { VerifyBundleFlags } from './commands.ts';
import { claimsSummary, loadPolicy, loadTrust, progress } from './common.ts';
import { formatReport, reportJson } from './format.ts';
import type { Io } from './io.ts';

export async function run(f: VerifyBundleFlags, file: string, io: Io): Promise<number> {
  const json = f.json === true;
  const say = progress(io, json);
  const allowSim = f['allow-sim'] === true;
  const policy = await loadPolicy(io, f.policy, allowSim);
  const trust = await loadTrust(io);
  const raw = await io.readFile(file);
  let bytes = raw;
  if (raw[0] === 0x7b /* '{' */) {
    try {
      bytes = encodeBundle(bundleFromJson(JSON.parse(new TextDecoder().decode(raw))));
    } catch (e) {
      if (e instanceof SyntaxError) throw configError('BUNDLE_UNREADABLE', `${file} is neither CBOR nor JSON`, { cause: e });
      throw e;
    }
  }
  const nonce = f.nonce ? fromHex(f.nonce, '--nonce') : decodeBundle(bytes).nonce;
  if (nonce.length !== 32) throw configError('USAGE', '--nonce must be 32 bytes of hex');
  const now = f.now ? new Date(f.now) : new Date();
  if (Number.isNaN(now.getTime())) throw configError('USAGE', '--now must be an ISO date');
  const maxAge = f['max-age'] === undefined ? undefined : Number(f['max-age']) * 1000;
  if (maxAge !== undefined && !(maxAge > 0)) throw configError('USAGE', '--max-age must be a positive number of seconds');
  say(`gm verify bundle: verifying ${file} offline...`);
  try {
    const collateral = f.collateral ? { base: f.collateral, fetch: (i: string | URL | Request, init?: RequestInit) => fetch(i, init) } : undefined;
    const r = await verifyEnclaveBundle(bytes, { nonce, policy, allowSim, trust, now, maxAgeMs: maxAge, ...(collateral ? { collateral } : {}) });
    const claims = claimsSummary(r.claims, r.settings ?? 'none');
    io.out(json ? reportJson(r.report, claims) : formatReport(r.report, claims));
    return 0;
  } catch (e) {
    if (e instanceof GmError && e.report) {
      io.out(json ? reportJson(e.report, { error: e.toJSON() }) : formatReport(e.report));
      io.err(`gm verify bundle: REJECTED ${e.code}: ${e.message}\n`);
      return e.kind === 'config' ? 2 : 1;
    }
    throw e;
  }
}
