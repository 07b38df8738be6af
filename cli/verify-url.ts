/**
 * `gm verify URL`: fetches the enclave's evidence for a fresh nonce (docs/design.md §4) and prints the verification
 * report, a table by default or JSON with --json. Exit 0 verified, 1 rejected, 2 usage/configuration.
 * `--save FILE` keeps the bundle for an offline audit with `gm verify bundle FILE`. `--collateral SHIM_URL` completes
 * what the bundle lacks (SEV-SNP certificates and CRL, TDX TCB info / QE identity / CRLs) from a host shim's cache,
 * verified against the vendor roots like the rest (client/collateral.ts).
 */
import { writeFile } from 'node:fs/promises';
import { configError, GmError } from '../attestation/errors.ts';
import { attest } from '../client/attest.ts';
import type { VerifyUrlFlags } from './commands.ts';
import { claimsSummary, loadPolicy, loadTrust, progress } from './common.ts';
import { formatReport, reportJson } from './format.ts';
import type { Io } from './io.ts';

export async function run(f: VerifyUrlFlags, url: string, io: Io): Promise<number> {
  if (!/^https?:\/\//.test(url)) throw configError('USAGE', `${url} is not an http(s) URL (or one of the verify commands: snp, tdx, gpu, bundle)`);
  const json = f.json === true;
  const say = progress(io, json);
  const allowSim = f['allow-sim'] === true;
  const policy = await loadPolicy(io, f.policy, allowSim);
  const trust = await loadTrust(io);
  const base = (f.relay ?? url).replace(/\/+$/, '');
  say(`gm verify: fetching evidence from ${base} with a fresh nonce...`);
  const t0 = performance.now();
  try {
    const get = (i: string | URL | Request, init?: RequestInit) => fetch(i, init);
    const r = await attest({ base, fetch: get, policy, allowSim, trust, now: () => new Date(), ...(f.collateral ? { collateral: { base: f.collateral, fetch: get } } : {}) });
    say(`gm verify: verified in ${Math.round(performance.now() - t0)} ms`);
    if (f.save) await writeFile(f.save, r.bundle);
    const claims = claimsSummary(r.claims, r.settings ?? 'none');
    io.out(json ? reportJson(r.report, claims) : formatReport(r.report, claims));
    return 0;
  } catch (e) {
    if (e instanceof GmError && e.report) {
      io.out(json ? reportJson(e.report, { error: e.toJSON() }) : formatReport(e.report));
      io.err(`gm verify: REJECTED ${e.code}: ${e.message}\n`);
      return e.kind === 'config' ? 2 : 1;
    }
    throw e;
  }
}
