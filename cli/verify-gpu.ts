/**
 * `gm verify gpu --evidence FILE [--chain FILE] [--nonce HEX] [--rim FILE ...] [--ocsp FILE ...] [--policy FILE]
 *  [--now ISO-8601] [--collected-at ISO-8601] [--sim-root FILE] [--sim-rim-root FILE] [--json]`
 * (`--collected-at`: when the evidence was collected, for the policy's maximum age; the SPDM report has no time.)
 *
 * Verifies NVIDIA GPU confidential-computing evidence: the nvtrust/nvattest JSON file (`[{arch, certificate,
 * evidence}]`), or a raw attestation report (binary or hex) with `--chain` (PEM). Prints one report per GPU naming
 * each check; a rejected GPU is named with the reason. The device root is the pinned NVIDIA Device Identity CA from
 * the trust directory, or `--sim-root` (a sim chain, marked as sim). `--ocsp` files are DER OCSP responses (cached
 * collateral). Without `--policy`, only verification runs and the policy row says so.
 * `--nras FILE --jwks FILE --issuer URL` verifies a saved NRAS attestation result (EAT) against a saved JWKS instead.
 * Exit 0 all GPUs verified, 1 a GPU rejected, 2 usage or configuration error.
 */
import { nodeP384VerifierAsync } from './node-verifiers.ts';
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { equalBytes, fromHex } from '../attestation/bytes.ts';
import { GmError, configError } from '../attestation/errors.ts';
import type { JSONWebKeySet } from 'jose';
import { type GpuClaims, type GpuEvidenceFailure, type GpuEvidenceItem, type GpuVerifyOptions, aggregateGpuReports, gpuEvidenceFromRaw, gpuPolicyFrom, parseGpuEvidenceList, verifyGpuEvidenceAll, verifyNrasResult } from '../attestation/nvidia/index.ts';
import { Checks } from '../attestation/report.ts';
import { parseOcspResponse } from '../attestation/nvidia/ocsp.ts';
import { loadTrustStore, trustDirFrom } from '../attestation/trust.ts';
import { type Certificate, parseCertificate } from '../attestation/x509/cert.ts';
import { certificatesFrom } from '../attestation/x509/pem.ts';
import type { VerifyGpuFlags } from './commands.ts';
import { isoFlag } from './common.ts';
import { formatReport, reportJson } from './format.ts';
import { type Io, binaryOrHex } from './io.ts';

/** The claims as the table shows them: measurements summarised, absent values left out. */
function claimsView(c: GpuClaims): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c)) {
    if (v === undefined) continue;
    if (k === 'measurements') out[k] = `${Object.keys(v as object).length} blocks`;
    else out[k] = v instanceof Date ? v.toISOString() : v;
  }
  return out;
}

export async function run(f: VerifyGpuFlags, io: Io): Promise<number> {
  if ((f.evidence === undefined) === (f.nras === undefined)) throw configError('USAGE', 'give --evidence FILE or --nras FILE (one of them)');
  const now = isoFlag(f.now, 'now') ?? new Date();
  const collectedAt = isoFlag(f['collected-at'], 'collected-at');
  let expectedNonce: Uint8Array | null = null;
  if (f.nonce !== undefined) {
    if (!/^[0-9a-fA-F]{64}$/.test(f.nonce)) throw configError('USAGE', '--nonce must be 32 bytes of hex (64 digits)');
    expectedNonce = fromHex(f.nonce);
  }

  if (f.nras) return runNras(f, f.nras, now, expectedNonce, io);

  const evidenceBytes = await io.readFile(f.evidence!);
  const text = new TextDecoder().decode(evidenceBytes);
  let items: (GpuEvidenceItem | GpuEvidenceFailure)[];
  try {
    // A JSON list is parsed GPU by GPU: an entry that does not parse fails only that GPU (its rows, and the verdict).
    items = text.trimStart().startsWith('[')
      ? parseGpuEvidenceList(text)
      : f.chain
        ? [gpuEvidenceFromRaw(binaryOrHex(evidenceBytes), new TextDecoder().decode(await io.readFile(f.chain)))]
        : (() => {
            throw configError('USAGE', `${f.evidence} is not the nvtrust JSON form; a raw report needs --chain FILE`);
          })();
  } catch (e) {
    if (!(e instanceof GmError)) throw e;
    // As snp and tdx do: the report is printed with its failed parse row, in JSON under --json.
    const checks = new Checks('NVIDIA GPU evidence');
    const failed = checks.failed('nvidia.evidence.parse', 'GPU evidence file parses (nvtrust JSON list, or a raw SPDM report with --chain)', undefined, e);
    io.out(f.json ? reportJson(failed.report!) : formatReport(failed.report!));
    io.err(`gm verify gpu: ${e.code}: ${e.message}\n`);
    return e.kind === 'config' ? 2 : 1;
  }

  const rims = await Promise.all((f.rim ?? []).map(async (p) => new TextDecoder().decode(await io.readFile(p))));
  const ocspDers = await Promise.all((f.ocsp ?? []).map(async (p) => ocspBytes(await io.readFile(p))));
  const ocsp = ocspDers.map((d) => parseOcspResponse(d));
  const options: { -readonly [K in keyof GpuVerifyOptions]: GpuVerifyOptions[K] } = {
    now, expectedNonce, rims, p384Verifier: nodeP384VerifierAsync, ...(collectedAt ? { collectedAt } : {}), policy: f.policy ? gpuPolicyFrom(new TextDecoder().decode(await io.readFile(f.policy)), f.policy) : null,
  };
  if (ocsp.length > 0)
    options.collateral = {
      ocsp: async (cert: Certificate) => ocspDers[ocsp.findIndex((r) => r.responses.some((s) => equalBytes(s.serialNumber, cert.serialNumber)))],
    };
  options.trustStore = await loadTrustStore(trustDirFrom(io.env, io.env.HOME ?? homedir()), fsp);
  const certsOf = async (f: string) => certificatesFrom(await io.readFile(f)).map((d) => parseCertificate(d));
  if (f['sim-root'] || f['sim-rim-root']) {
    // Explicit sim roots replace the pinned ones for their role only; the output says SIM.
    options.roots = {
      device: f['sim-root'] ? await certsOf(f['sim-root']) : [options.trustStore.get('nvidia-device-root')],
      ...(f['sim-rim-root'] ? { rim: await certsOf(f['sim-rim-root']) } : {}),
    };
    options.sim = true;
  }

  const { outcomes } = await verifyGpuEvidenceAll(items, options);
  const rejectedGpus = outcomes.filter((o) => o.error);
  if (f.json) {
    // The same shape as `gm verify snp --json`: top-level rows are every GPU's checks (ids prefixed `gpu<i>.`).
    io.out(reportJson(aggregateGpuReports(outcomes),
      outcomes.map((o) => ({ gpu: o.gpu, arch: o.arch, verified: !o.error, error: o.error?.toJSON(), report: o.report, claims: o.result?.claims }))));
  } else {
    for (const o of outcomes) io.out(formatReport(o.report, o.result ? claimsView(o.result.claims) : undefined));
    io.out(`${outcomes.length - rejectedGpus.length}/${outcomes.length} GPUs verified${options.sim ? ' (SIM root: not NVIDIA)' : ''}\n`);
  }
  for (const o of rejectedGpus) io.err(`gm verify gpu: GPU ${o.gpu} (${o.arch}) rejected: ${o.error!.code}: ${o.error!.message}\n`);
  return rejectedGpus.length === 0 ? 0 : 1;
}

/** OCSP files may be DER (as responders serve them) or base64 text. */
function ocspBytes(b: Uint8Array): Uint8Array {
  return b[0] === 0x30 ? b : Uint8Array.from(atob(new TextDecoder().decode(b).replace(/\s/g, '')), (c) => c.charCodeAt(0));
}

/** NRAS mode: the EAT (`[["JWT", token], {"GPU-0": token, ...}]`) checked against the JWKS file, then the policy. */
async function runNras(f: VerifyGpuFlags, nras: string, now: Date, expectedNonce: Uint8Array | null, io: Io): Promise<number> {
  if (!f.jwks || !f.issuer) throw configError('USAGE', '--nras needs --jwks FILE and --issuer URL');
  const json = f.json === true;
  let jwks: JSONWebKeySet;
  try {
    jwks = JSON.parse(new TextDecoder().decode(await io.readFile(f.jwks))) as JSONWebKeySet;
  } catch (e) {
    throw configError('USAGE', `${f.jwks} is not a JSON JWKS`, { cause: e });
  }
  const policy = f.policy ? gpuPolicyFrom(new TextDecoder().decode(await io.readFile(f.policy)), f.policy) : null;
  const text = new TextDecoder().decode(await io.readFile(nras));
  try {
    const r = await verifyNrasResult(text, { now, jwks, expectedNonce, issuer: f.issuer, policy });
    io.out(json ? reportJson(r.report, r.gpus.map((g) => g.claims)) : formatReport(r.report) + r.gpus.map((g) => formatReport(g.report, claimsView(g.claims))).join(''));
    return 0;
  } catch (e) {
    if (e instanceof GmError && e.report) {
      io.out(json ? reportJson(e.report) : formatReport(e.report));
      io.err(`gm verify gpu: ${e.code}: ${e.message}\n`);
      return e.kind === 'config' ? 2 : 1;
    }
    throw e;
  }
}
