/**
 * Certificate revocation lists (RFC 5280 §5): parse, verify the signature with the issuer, check freshness at
 * `now`, and look a serial number up. AMD KDS `/crl`, Intel PCS root and PCK CRLs use this format.
 */
import { hex } from '../bytes.ts';
import { collateralError, protocolError, rejected } from '../errors.ts';
import { type AlgorithmIdentifier, type Certificate, type Name, parseAlgorithmIdentifier, parseName } from './cert.ts';
import { TAG, parseDer, readBitStringBytes, readIntegerBytes, readSmallInt, readTime, reader } from './der.ts';
import { type SigAlg, signatureAlgorithmOf, verifySignature } from './signature.ts';
import { isPem, pemDecodeAll } from './pem.ts';

export interface Crl {
  readonly der: Uint8Array;
  readonly tbs: Uint8Array;
  readonly issuer: Name;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** Revoked serial numbers, hex of the INTEGER content bytes. */
  readonly revoked: ReadonlySet<string>;
  readonly signatureAlgorithm: AlgorithmIdentifier;
  readonly signature: Uint8Array;
}

export function parseCrl(input: Uint8Array): Crl {
  const der = isPem(input) ? pemDecodeAll(new TextDecoder().decode(input), 'X509 CRL')[0]! : input;
  try {
    const r = reader(parseDer(der));
    const tbsEl = r.next(TAG.SEQUENCE);
    const signatureAlgorithm = parseAlgorithmIdentifier(r.next(TAG.SEQUENCE));
    const signature = readBitStringBytes(r.next(TAG.BIT_STRING));
    r.end();
    const t = reader(tbsEl);
    const v = t.optional(TAG.INTEGER);
    if (v && readSmallInt(v) !== 1) throw protocolError('CRL_INVALID', 'CRL version is not v2');
    parseAlgorithmIdentifier(t.next(TAG.SEQUENCE));
    const issuer = parseName(t.next(TAG.SEQUENCE));
    const thisUpdate = readTime(t.next());
    const nu = t.peekTag();
    const nextUpdate = nu === TAG.UTCTime || nu === TAG.GeneralizedTime ? readTime(t.next()) : undefined;
    const revoked = new Set<string>();
    const list = t.optional(TAG.SEQUENCE);
    if (list) {
      const lr = reader(list);
      while (!lr.done) {
        const entry = reader(lr.next(TAG.SEQUENCE));
        revoked.add(hex(readIntegerBytes(entry.next(TAG.INTEGER))));
        readTime(entry.next());
        entry.optional(TAG.SEQUENCE);
        entry.end();
      }
    }
    t.optional(0xa0);
    t.end();
    return { der, tbs: tbsEl.raw, issuer, thisUpdate, nextUpdate, revoked, signatureAlgorithm, signature };
  } catch (e) {
    if (e instanceof Error && 'code' in e && e.code === 'CRL_INVALID') throw e;
    throw protocolError('CRL_INVALID', `CRL does not parse: ${(e as Error).message}`, { cause: e });
  }
}

/** Verifies the CRL's signature by `issuer` and that `now` lies in [thisUpdate, nextUpdate]. */
export async function verifyCrl(crl: Crl, issuer: Certificate, now: Date, allowed: readonly SigAlg[]): Promise<void> {
  if (hex(crl.issuer.raw) !== hex(issuer.subject.raw)) throw rejected('CRL_ISSUER_MISMATCH', `CRL issued by "${crl.issuer.text}", expected "${issuer.subject.text}"`);
  const alg = signatureAlgorithmOf(crl.signatureAlgorithm, issuer.spki);
  await verifySignature(issuer.spki, alg, crl.tbs, crl.signature, { allowed, failCode: 'CRL_SIGNATURE', what: `CRL of "${crl.issuer.text}"` });
  if (now < crl.thisUpdate) throw collateralError('CRL_NOT_YET_VALID', `CRL of "${crl.issuer.text}" is dated ${crl.thisUpdate.toISOString()}, after now`);
  if (crl.nextUpdate && now > crl.nextUpdate) throw collateralError('CRL_EXPIRED', `CRL of "${crl.issuer.text}" expired ${crl.nextUpdate.toISOString()}; fetch a fresh one`);
}

export function assertNotRevoked(cert: Certificate, crl: Crl): void {
  if (crl.revoked.has(hex(cert.serialNumber))) throw rejected('CERT_REVOKED', `certificate "${cert.subject.text}" (serial ${hex(cert.serialNumber)}) is revoked by the CRL of "${crl.issuer.text}"`);
}
