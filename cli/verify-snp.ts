/**
 * `gm verify snp --report FILE [--cert FILE] [--chain FILE] [--crl FILE] [--policy FILE] [--now ISO-8601] [--json]
 *  [--allow-unpinned]`
 *
 * Verifies an AMD SEV-SNP attestation report with its VCEK/VLEK. The report file may be the bare report or an Azure HCL
 * report (then the runtime-data binding is checked too), raw, hex (with or without 0x) or base64; the first report row
 * says which. --cert and --chain may hold the certificates in any layout (Azure's vcek.pem with VCEK, ASK and ARK; AMD's
 * cert_chain; an ASK alone; either order): each is picked by its role (sevsnp/cert-layout.ts), an ASK/ARK given must
 * match a pin unless --allow-unpinned (e.g. a sim chain), and a role that is missing comes from the pinned trust
 * directory; no VCEK/VLEK at all, or certificates that do not link, is a usage error (exit 2).
 * Without --policy the default policy applies (debug forbidden, VMPL 0, no migration agent).
 * Exit 0 verified, 1 rejected, 2 usage or configuration error.
 */
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { equalBytes } from '../attestation/bytes.ts';
import { decodeEvidence, withInputRow } from '../attestation/encoding.ts';
import { GmError, configError } from '../attestation/errors.ts';
import { PolicyReader } from '../attestation/policy.ts';
import { describeAmdCertificates, sortAmdCertificates } from '../attestation/sevsnp/cert-layout.ts';
import { type SnpPolicy, type VerifySevSnpOptions, parseSnpPolicy, verifySevSnp, verifySevSnpHcl } from '../attestation/sevsnp/index.ts';
import { type TrustStore, loadTrustStore, trustDirFrom } from '../attestation/trust.ts';
import { certificatesFrom } from '../attestation/x509/pem.ts';
import type { VerifySnpFlags } from './commands.ts';
import { isoFlag } from './common.ts';
import { formatReport, reportJson } from './format.ts';
import type { Io } from './io.ts';
import { nodeP384Verifier } from './node-verifiers.ts';

export async function run(f: VerifySnpFlags, io: Io): Promise<number> {
  if (!f.report) throw configError('USAGE', '--report FILE is required');
  const json = f.json === true;
  const now = isoFlag(f.now, 'now') ?? new Date();

  const decoded = decodeEvidence(await io.readFile(f.report), 'snp-report', f.report);
  let policy: SnpPolicy | undefined;
  if (f.policy) policy = parseSnpPolicy(PolicyReader.parse(new TextDecoder().decode(await io.readFile(f.policy)), f.policy), f.policy);

  // node:crypto for the report signature (as gm verify tdx and gpu): same algorithm, no WebCrypto thread-pool hop.
  const options: { -readonly [K in keyof VerifySevSnpOptions]: VerifySevSnpOptions[K] } = { now, policy, p384Verifier: nodeP384Verifier };
  if (f.crl) options.crl = await io.readFile(f.crl);
  const files: { file: string; ders: Uint8Array[] }[] = [];
  for (const file of [f.cert, f.chain]) {
    if (file === undefined) continue;
    let ders: Uint8Array[];
    try {
      ders = certificatesFrom(await io.readFile(file));
    } catch (e) {
      if (e instanceof GmError && e.kind === 'config') throw e;
      throw configError('SNP_CERT_LAYOUT', `${file}: not a PEM or DER certificate file`, { cause: e });
    }
    files.push({ file, ders });
  }
  const certs = await sortAmdCertificates(files);
  if (!certs.leaf)
    throw configError('SNP_CERT_ROLE_MISSING', `no VCEK or VLEK certificate among the files given (${describeAmdCertificates(certs)}): pass it with --cert FILE`);
  options.vcek = certs.leaf.cert.der;
  const trust = async (): Promise<TrustStore> => loadTrustStore(trustDirFrom(io.env, io.env.HOME ?? homedir()), fsp);
  const given = [certs.signer, certs.ark].filter((c) => c !== undefined);
  const unpinned = given.filter((c) => !c.pin);
  if (unpinned.length > 0 && !f['allow-unpinned'])
    throw configError('SNP_CHAIN_NOT_PINNED', `${unpinned.map((c) => `${c.file}: ${c.role.toUpperCase()} "${c.cert.subject.text}"`).join('; ')} matches no pinned AMD certificate; pass --allow-unpinned to trust it anyway (sim chains)`);
  if (given.length === 0) options.trust = await trust();
  else if (unpinned.length > 0) {
    // An unpinned chain is trusted only whole: the caller names both its ASK/ASVK and its ARK.
    if (!certs.signer || !certs.ark)
      throw configError('SNP_CERT_ROLE_MISSING', `an unpinned chain needs both its ${certs.leaf.role === 'vcek' ? 'ASK' : 'ASVK'} and its ARK (given: ${describeAmdCertificates(certs)})`);
    options.roots = { ask: certs.signer.cert, ark: certs.ark.cert };
  } else {
    // Pinned certificates are AMD's: a role the files lack is the pinned one of the same product.
    const product = (certs.signer ?? certs.ark)!.pin!.product!;
    const store = certs.signer && certs.ark ? undefined : await trust();
    const ark = certs.ark?.cert ?? store!.get('amd-ark', product);
    const ask = certs.signer?.cert ?? store!.get(certs.leaf.role === 'vcek' ? 'amd-ask' : 'amd-asvk', product);
    if (!equalBytes(certs.leaf.cert.issuer.raw, ask.subject.raw))
      throw configError('SNP_CERT_LAYOUT', `the ${certs.leaf.role.toUpperCase()} is issued by "${certs.leaf.cert.issuer.text}", but the chain given is ${product}'s ("${ask.subject.text}")`);
    options.roots = { ask, ark, anchor: `pinned ARK-${product}` };
  }

  try {
    const { claims, report: vr } = decoded.structure === 'Azure HCL report' ? await verifySevSnpHcl(decoded.bytes, options) : await verifySevSnp(decoded.bytes, options);
    const shown = withInputRow(vr, decoded, 'snp');
    io.out(json ? reportJson(shown, claims) : formatReport(shown, claims as unknown as Record<string, unknown>));
    return 0;
  } catch (e) {
    if (e instanceof GmError && e.report) {
      const shown = withInputRow(e.report, decoded, 'snp');
      io.out(json ? reportJson(shown) : formatReport(shown));
      io.err(`gm verify snp: ${e.code}: ${e.message}\n`);
      return e.kind === 'config' ? 2 : 1;
    }
    throw e;
  }
}
