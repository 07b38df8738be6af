/**
 * `gm verify snp --report FILE [--cert FILE] [--chain FILE] [--crl FILE] [--policy FILE] [--now ISO-8601] [--json]
 *  [--allow-unpinned]`
 *
 * Verifies an AMD SEV-SNP attestation report (binary or hex) with its VCEK/VLEK (PEM or DER). Without --chain the
 * ARK and ASK/ASVK come from the pinned trust directory for the detected product. A --chain file (ASK then ARK, as
 * AMD's cert_chain) is accepted when its ARK matches a pin, or with --allow-unpinned (e.g. a sim chain), and the
 * report says which. Without --policy the default policy applies (debug forbidden, VMPL 0, no migration agent).
 * Exit 0 verified, 1 rejected, 2 usage or configuration error.
 */
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { hex, sha256 } from '../../attestation/bytes.ts';
import { GmError, configError } from '../../attestation/errors.ts';
import { PolicyReader } from '../../attestation/policy.ts';
import { type SnpPolicy, type VerifySevSnpOptions, parseSnpPolicy, verifySevSnp } from '../../attestation/sevsnp/index.ts';
import { ANCHOR_FILES, loadTrustStore, trustDirFrom } from '../../attestation/trust.ts';
import { parseCertificate } from '../../attestation/x509/cert.ts';
import { certificatesFrom } from '../../attestation/x509/pem.ts';
import { formatReport, reportJson } from './format.ts';
import { type Io, binaryOrHex } from './io.ts';
import { nodeP384Verifier } from './node-verifiers.ts';

const USAGE = 'usage: gm verify snp --report FILE [--cert FILE] [--chain FILE] [--crl FILE] [--policy FILE] [--now ISO-8601] [--json] [--allow-unpinned]\n';
const VALUE_FLAGS = ['--report', '--cert', '--chain', '--crl', '--policy', '--now'] as const;
const BOOL_FLAGS = ['--json', '--allow-unpinned'] as const;

export interface ParsedArgs {
  readonly values: Readonly<Record<string, string | undefined>>;
  readonly flags: ReadonlySet<string>;
}

/** Parses `--flag value` / `--flag=value` and boolean flags; returns the usage error text on anything else. */
export function parseArgs(argv: readonly string[], valueFlags: readonly string[], boolFlags: readonly string[]): ParsedArgs | string {
  const values: Record<string, string> = {};
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (valueFlags.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') return `${name} needs a value`;
      if (name in values) return `${name} given twice`;
      values[name] = v;
    } else if (boolFlags.includes(a)) flags.add(a);
    else return `unknown argument ${JSON.stringify(a)}`;
  }
  return { values, flags };
}

export async function run(argv: string[], io: Io): Promise<number> {
  const args = parseArgs(argv, VALUE_FLAGS, BOOL_FLAGS);
  if (typeof args === 'string' || !args.values['--report']) {
    io.err(`gm verify snp: ${typeof args === 'string' ? args : '--report is required'}\n${USAGE}`);
    return 2;
  }
  const v = args.values;
  const json = args.flags.has('--json');
  let now = new Date();
  if (v['--now'] !== undefined) {
    now = new Date(v['--now']);
    if (Number.isNaN(now.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(v['--now'])) {
      io.err(`gm verify snp: --now ${JSON.stringify(v['--now'])} is not an ISO-8601 time\n${USAGE}`);
      return 2;
    }
  }

  const report = binaryOrHex(await io.readFile(v['--report']!));
  let policy: SnpPolicy | undefined;
  if (v['--policy']) policy = parseSnpPolicy(PolicyReader.parse(new TextDecoder().decode(await io.readFile(v['--policy'])), v['--policy']), v['--policy']);

  // node:crypto for the report signature (as gm verify tdx and gpu): same algorithm, no WebCrypto thread-pool hop.
  const options: { -readonly [K in keyof VerifySevSnpOptions]: VerifySevSnpOptions[K] } = { now, policy, p384Verifier: nodeP384Verifier };
  if (v['--cert']) options.vcek = await io.readFile(v['--cert']);
  if (v['--crl']) options.crl = await io.readFile(v['--crl']);
  if (v['--chain']) {
    const ders = certificatesFrom(await io.readFile(v['--chain']));
    if (ders.length !== 2) throw configError('SNP_CHAIN_FILE', `${v['--chain']}: expected 2 certificates (ASK or ASVK, then ARK), found ${ders.length}`);
    const arkPin = hex(await sha256(ders[1]!)).toUpperCase();
    const pinned = ANCHOR_FILES.flatMap((f) => f.pins).find((p) => p.role === 'amd-ark' && p.sha256 === arkPin);
    if (!pinned && !args.flags.has('--allow-unpinned'))
      throw configError('SNP_CHAIN_NOT_PINNED', `${v['--chain']}: its ARK (SHA-256 ${arkPin}) matches no pinned AMD root; pass --allow-unpinned to trust it anyway (sim chains)`);
    options.roots = { ask: parseCertificate(ders[0]!), ark: parseCertificate(ders[1]!) };
  } else {
    const dir = trustDirFrom(io.env, io.env.HOME ?? homedir());
    options.trust = await loadTrustStore(dir, fsp);
  }

  try {
    const { claims, report: vr } = await verifySevSnp(report, options);
    io.out(json ? reportJson(vr, claims) : formatReport(vr, claims as unknown as Record<string, unknown>));
    return 0;
  } catch (e) {
    if (e instanceof GmError && e.report) {
      io.out(json ? reportJson(e.report) : formatReport(e.report));
      io.err(`gm verify snp: ${e.code}: ${e.message}\n`);
      return e.kind === 'config' ? 2 : 1;
    }
    throw e;
  }
}
