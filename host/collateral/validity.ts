/**
 * How long a cached collateral item stays fresh: its own validity, read from the item (CRL and OCSP nextUpdate,
 * certificate notAfter, Intel's JSON nextUpdate), capped so the shim re-fetches regularly. This is a caching
 * decision only: the consumer checks the same dates again (docs/design.md §1, the shim is trusted for nothing).
 */
import { parseCrl } from '../../attestation/x509/crl.ts';
import { parseCertificate } from '../../attestation/x509/cert.ts';
import { certificatesFrom } from '../../attestation/x509/pem.ts';
import { TAG, parseDer, reader, readTime } from '../../attestation/x509/der.ts';
import type { CollateralKind } from './sources.ts';

export interface ValidityOptions {
  /** Upper bound on any item's freshness (the vendor may revoke sooner than a CRL's nextUpdate). */
  readonly maxTtlMs: number;
  /** Freshness of items that carry no date of their own (NVIDIA RIMs). */
  readonly defaultTtlMs: number;
}

export const DEFAULT_VALIDITY: ValidityOptions = { maxTtlMs: 24 * 3600_000, defaultTtlMs: 6 * 3600_000 };

/** The item's own expiry, or undefined when it cannot be read (then the item is served but not cached). */
export function ownExpiry(kind: CollateralKind, body: Uint8Array): Date | undefined {
  try {
    switch (kind) {
      case 'amd-crl':
      case 'intel-pck-crl':
      case 'intel-root-crl':
        return parseCrl(body).nextUpdate;
      case 'amd-vcek':
      case 'amd-cert-chain': {
        const ders = certificatesFrom(body);
        if (ders.length === 0) return undefined;
        return new Date(Math.min(...ders.map((d) => parseCertificate(d).notAfter.getTime())));
      }
      case 'intel-tcb-info':
        return jsonDate(body, 'tcbInfo');
      case 'intel-qe-identity':
        return jsonDate(body, 'enclaveIdentity');
      case 'nvidia-ocsp':
        return ocspNextUpdate(body);
      case 'nvidia-rim':
        return undefined; // RIMs carry no validity date; cacheUntil uses the default TTL
    }
  } catch {
    return undefined;
  }
}

/** Absolute expiry for the cache: min(own validity, now + maxTtl); undefined = do not cache. */
export function cacheUntil(kind: CollateralKind, body: Uint8Array, now: Date, opts: ValidityOptions = DEFAULT_VALIDITY): Date | undefined {
  const cap = now.getTime() + opts.maxTtlMs;
  if (kind === 'nvidia-rim') return isJson(body) ? new Date(Math.min(cap, now.getTime() + opts.defaultTtlMs)) : undefined;
  const own = ownExpiry(kind, body);
  if (!own || own.getTime() <= now.getTime()) return undefined;
  return new Date(Math.min(cap, own.getTime()));
}

function isJson(body: Uint8Array): boolean {
  try {
    JSON.parse(new TextDecoder().decode(body));
    return true;
  } catch {
    return false;
  }
}

function jsonDate(body: Uint8Array, field: string): Date | undefined {
  const doc = JSON.parse(new TextDecoder().decode(body)) as Record<string, { nextUpdate?: unknown } | undefined>;
  const s = doc[field]?.nextUpdate;
  if (typeof s !== 'string') return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * The earliest nextUpdate of the SingleResponses in an OCSPResponse (RFC 6960 §4.2.1). Read only for caching;
 * the consumer verifies the responder's signature.
 */
function ocspNextUpdate(body: Uint8Array): Date | undefined {
  const resp = reader(parseDer(body));
  const status = resp.next(TAG.ENUMERATED);
  if (status.content.length !== 1 || status.content[0] !== 0) return undefined; // not "successful"
  const bytes = reader(reader(resp.next(0xa0)).next(TAG.SEQUENCE)); // [0] EXPLICIT ResponseBytes
  bytes.next(TAG.OID);
  const basic = reader(parseDer(bytes.next(TAG.OCTET_STRING).content));
  const tbs = reader(basic.next(TAG.SEQUENCE));
  tbs.optional(0xa0); // version
  tbs.next(); // responderID ([1] or [2])
  tbs.next(TAG.GeneralizedTime); // producedAt
  const responses = reader(tbs.next(TAG.SEQUENCE));
  let min: number | undefined;
  while (!responses.done) {
    const single = reader(responses.next(TAG.SEQUENCE));
    single.next(TAG.SEQUENCE); // certID
    single.next(); // certStatus
    single.next(TAG.GeneralizedTime); // thisUpdate
    const nu = single.optional(0xa0);
    if (!nu) return undefined; // no nextUpdate: newer information is always available, do not cache
    const t = readTime(reader(nu).next(TAG.GeneralizedTime)).getTime();
    min = min === undefined ? t : Math.min(min, t);
  }
  return min === undefined ? undefined : new Date(min);
}
