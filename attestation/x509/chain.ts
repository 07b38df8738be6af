/**
 * Certificate path validation (RFC 5280 §6, reduced to what vendor attestation chains need): each certificate
 * signed by the next, issuer names equal, every issuer a CA, every certificate valid at `now`, and the path ending
 * in a certificate signed by (or equal to) one of the caller's pinned roots. Revocation is separate (`crl.ts`).
 */
import { equalBytes } from '../bytes.ts';
import { rejected } from '../errors.ts';
import { type Certificate, isCA } from './cert.ts';
import { type SigAlg, verifyCertificateSignature } from './signature.ts';

export interface ChainOptions {
  readonly now: Date;
  /** Pinned roots (already checked against their fingerprints by the trust store). */
  readonly roots: readonly Certificate[];
  /** Signature algorithms allowed anywhere on this path. */
  readonly algorithms: readonly SigAlg[];
}

export interface VerifiedChain {
  /** Leaf first, root last. */
  readonly path: readonly Certificate[];
  readonly root: Certificate;
}

export function checkValidity(cert: Certificate, now: Date): void {
  if (now < cert.notBefore) throw rejected('CERT_NOT_YET_VALID', `certificate "${cert.subject.text}" is not valid before ${cert.notBefore.toISOString()} (now ${now.toISOString()})`);
  if (now > cert.notAfter) throw rejected('CERT_EXPIRED', `certificate "${cert.subject.text}" expired ${cert.notAfter.toISOString()} (now ${now.toISOString()})`);
}

/** Validates `chain` (leaf first; the root may be included or omitted) up to one of `options.roots`. */
export async function verifyChain(chain: readonly Certificate[], options: ChainOptions): Promise<VerifiedChain> {
  if (chain.length === 0) throw rejected('CERT_CHAIN_EMPTY', 'empty certificate chain');
  const path = [...chain];
  const last = path[path.length - 1]!;
  let root = options.roots.find((r) => equalBytes(r.der, last.der));
  if (!root) {
    root = options.roots.find((r) => equalBytes(r.subject.raw, last.issuer.raw));
    if (!root) throw rejected('CERT_UNTRUSTED_ROOT', `certificate "${last.subject.text}" is not issued by a pinned root (issuer "${last.issuer.text}")`);
    path.push(root);
  }
  for (const c of path) checkValidity(c, options.now);
  for (let i = 0; i + 1 < path.length; i++) {
    const cert = path[i]!;
    const issuer = path[i + 1]!;
    if (!equalBytes(cert.issuer.raw, issuer.subject.raw))
      throw rejected('CERT_ISSUER_MISMATCH', `certificate "${cert.subject.text}" names issuer "${cert.issuer.text}", next is "${issuer.subject.text}"`);
    if (!isCA(issuer)) throw rejected('CERT_NOT_CA', `issuer "${issuer.subject.text}" is not a CA (basicConstraints)`);
    await verifyCertificateSignature(cert, issuer, options.algorithms);
  }
  // The root must be self-signed with an allowed algorithm: a pinned fingerprint alone would also do, but this
  // catches a pin table that names a non-root by mistake.
  if (!equalBytes(root.issuer.raw, root.subject.raw)) throw rejected('CERT_UNTRUSTED_ROOT', `pinned root "${root.subject.text}" is not self-issued`);
  await verifyCertificateSignature(root, root, options.algorithms);
  return { path, root };
}
