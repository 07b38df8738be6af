/**
 * AMD certificate files in the layouts deployments write them: Azure's `vcek.pem` (VCEK, ASK and ARK in one PEM), AMD
 * KDS `cert_chain` (ASK then ARK), an ASK-only file, a chain in either order. Every certificate is given its role by
 * its subject as AMD names them (VCEK and VLEK specification: CN "SEV-VCEK", "SEV-VLEK", "SEV-<product>",
 * "SEV-VLEK-<product>", "ARK-<product>"), the issuer names must link leaf → ASK/ASVK → ARK, and the ASK/ASVK and ARK
 * are looked up in the pin table. A layout that does not give each role exactly once is a configuration error
 * (the caller's files are wrong), never a rejection of the evidence.
 *
 * Parsing and naming only: signatures are checked by verify.ts.
 */
import { equalBytes, hex, sha256 } from '../bytes.ts';
import { configError } from '../errors.ts';
import { ANCHOR_FILES, type AnchorPin } from '../trust.ts';
import { type Certificate, commonName, parseCertificate } from '../x509/cert.ts';

export type AmdCertRole = 'vcek' | 'vlek' | 'ask' | 'asvk' | 'ark';

export interface AmdCertificate {
  readonly role: AmdCertRole;
  readonly cert: Certificate;
  /** The file it came from (for messages). */
  readonly file: string;
  /** The pin it matched (ASK/ASVK/ARK only). */
  readonly pin: AnchorPin | undefined;
}

export interface AmdCertificateSet {
  readonly leaf: AmdCertificate | undefined;
  /** The ASK (VCEK chains) or ASVK (VLEK chains). */
  readonly signer: AmdCertificate | undefined;
  readonly ark: AmdCertificate | undefined;
}

const PRODUCTS = '(Milan|Genoa|Turin)';
/** gm's simulated AMD (sim.ts) names its certificates like AMD's with " (sim)" appended; pins still decide trust. */
const SIM = '( \\(sim\\))?';
function roleOf(cert: Certificate): AmdCertRole | undefined {
  const cn = commonName(cert.subject) ?? '';
  const is = (re: string) => new RegExp(`^${re}${SIM}$`).test(cn);
  if (is('SEV-VCEK')) return 'vcek';
  if (is('SEV-VLEK')) return 'vlek';
  if (is(`SEV-VLEK-${PRODUCTS}`)) return 'asvk';
  if (is(`SEV-${PRODUCTS}`)) return 'ask';
  if (is(`ARK-${PRODUCTS}`) && equalBytes(cert.subject.raw, cert.issuer.raw)) return 'ark';
  return undefined;
}

/** One certificate per slot: the leaf (VCEK or VLEK), its signer (ASK or ASVK), the ARK. */
const slot = (r: AmdCertRole) => (r === 'vcek' || r === 'vlek' ? 'leaf' : r === 'ark' ? 'ark' : 'signer');
const PIN_ROLE = { ask: 'amd-ask', asvk: 'amd-asvk', ark: 'amd-ark' } as const;
const name = (c: AmdCertificate) => `${c.role.toUpperCase()} "${commonName(c.cert.subject)}" (${c.file})`;
const layout = (msg: string) => configError('SNP_CERT_LAYOUT', msg);

/**
 * Sorts the certificates of `files` (DER each) by role. Throws SNP_CERT_LAYOUT (configuration) for a certificate
 * that is none of the roles, a role given twice with different bytes, or issuer names that do not link.
 */
export async function sortAmdCertificates(files: readonly { readonly file: string; readonly ders: readonly Uint8Array[] }[]): Promise<AmdCertificateSet> {
  const found: AmdCertificate[] = [];
  for (const { file, ders } of files) {
    for (const der of ders) {
      let cert: Certificate;
      try {
        cert = parseCertificate(der);
      } catch (e) {
        throw configError('SNP_CERT_LAYOUT', `${file}: a certificate does not parse: ${(e as Error).message}`, { cause: e });
      }
      const role = roleOf(cert);
      if (!role) throw layout(`${file}: "${cert.subject.text}" is not a VCEK, VLEK, ASK, ASVK or ARK`);
      const prior = found.find((f) => slot(f.role) === slot(role));
      if (prior) {
        if (equalBytes(prior.cert.der, cert.der)) continue;
        throw layout(`${file}: a second ${role.toUpperCase()} "${commonName(cert.subject)}" beside ${name(prior)}: give one certificate per role`);
      }
      const fp = hex(await sha256(der)).toUpperCase();
      const pin = role === 'vcek' || role === 'vlek' ? undefined
        : ANCHOR_FILES.flatMap((f) => f.pins).find((p) => p.role === PIN_ROLE[role] && p.sha256 === fp);
      found.push({ role, cert, file, pin });
    }
  }
  const leaf = found.find((f) => f.role === 'vcek' || f.role === 'vlek');
  const signer = found.find((f) => f.role === 'ask' || f.role === 'asvk');
  const ark = found.find((f) => f.role === 'ark');
  if (leaf && signer) {
    const want = leaf.role === 'vcek' ? 'ask' : 'asvk';
    if (signer.role !== want) throw layout(`${name(leaf)} needs an ${want.toUpperCase()}, the files give ${name(signer)}`);
    if (!equalBytes(leaf.cert.issuer.raw, signer.cert.subject.raw)) throw layout(`${name(leaf)} is issued by "${leaf.cert.issuer.text}", not by ${name(signer)}`);
  }
  if (signer && ark && !equalBytes(signer.cert.issuer.raw, ark.cert.subject.raw)) throw layout(`${name(signer)} is issued by "${signer.cert.issuer.text}", not by ${name(ark)}`);
  return { leaf, signer, ark };
}

/** Lists what was found, for a "role missing" message. */
export function describeAmdCertificates(set: AmdCertificateSet): string {
  const all = [set.leaf, set.signer, set.ark].filter((c): c is AmdCertificate => c !== undefined);
  return all.length === 0 ? 'no certificates' : all.map(name).join(', ');
}
