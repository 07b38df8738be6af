/**
 * Which vendor collateral the host shim fetches and serves (docs/design.md §1: the shim is trusted for nothing, so it
 * only saves round trips to AMD KDS, Intel PCS and NVIDIA; every byte it serves is re-verified by the consumer).
 *
 * The shim is not an open proxy: a request path is served only when it matches one of these patterns, and it maps
 * to exactly one vendor URL. Paths mirror the vendors' own, under `/v1/collateral/<source>/`.
 */
export type CollateralKind = 'amd-vcek' | 'amd-cert-chain' | 'amd-crl' | 'intel-tcb-info' | 'intel-qe-identity' | 'intel-pck-crl' | 'intel-root-crl' | 'nvidia-rim' | 'nvidia-ocsp';

export interface VendorBases {
  /** AMD Key Distribution Service. */
  readonly amd: string;
  /** Intel Provisioning Certification Service API. */
  readonly intel: string;
  /** Intel's certificate/CRL distribution host (the SGX root CA CRL). */
  readonly intelCerts: string;
  /** NVIDIA RIM service. */
  readonly nvidiaRim: string;
  /** NVIDIA OCSP responder. */
  readonly nvidiaOcsp: string;
}

export const VENDOR_BASES: VendorBases = {
  amd: 'https://kdsintf.amd.com',
  intel: 'https://api.trustedservices.intel.com',
  intelCerts: 'https://certificates.trustedservices.intel.com',
  nvidiaRim: 'https://rim.attestation.nvidia.com',
  nvidiaOcsp: 'https://ocsp.ndis.nvidia.com',
};

export interface CollateralRoute {
  readonly kind: CollateralKind;
  readonly method: 'GET' | 'POST';
  /** The vendor URL this request maps to. */
  readonly upstream: string;
  /** Vendor response headers that carry collateral (Intel's issuer chains) and must be cached and served too. */
  readonly keepHeaders: readonly string[];
}

const PRODUCT = '(Milan|Genoa|Turin)';
const SPL = /^(blSPL|teeSPL|snpSPL|ucodeSPL|fmcSPL)$/;

interface Pattern {
  readonly source: keyof VendorBases;
  readonly re: RegExp;
  readonly kind: CollateralKind;
  readonly method: 'GET' | 'POST';
  /** Allowed query parameters: name → value pattern. Anything else is refused. */
  readonly query: (name: string, value: string) => boolean;
  readonly keepHeaders?: readonly string[];
}

const none = (): boolean => false;
const PATTERNS: readonly Pattern[] = [
  { source: 'amd', re: new RegExp(`^/v[cl]ek/v1/${PRODUCT}/cert_chain$`), kind: 'amd-cert-chain', method: 'GET', query: none },
  { source: 'amd', re: new RegExp(`^/v[cl]ek/v1/${PRODUCT}/crl$`), kind: 'amd-crl', method: 'GET', query: none },
  // VCEK by chip id (64-byte hwID as hex) and reported TCB SPLs (AMD KDS spec §4.1).
  { source: 'amd', re: new RegExp(`^/vcek/v1/${PRODUCT}/[0-9a-fA-F]{64,128}$`), kind: 'amd-vcek', method: 'GET', query: (n, v) => SPL.test(n) && /^\d{1,3}$/.test(v) },
  { source: 'intel', re: /^\/(tdx|sgx)\/certification\/v4\/tcb$/, kind: 'intel-tcb-info', method: 'GET', query: (n, v) => n === 'fmspc' && /^[0-9a-fA-F]{12}$/.test(v), keepHeaders: ['tcb-info-issuer-chain', 'tcb-info-signed-issuer-chain'] },
  { source: 'intel', re: /^\/(tdx|sgx)\/certification\/v4\/qe\/identity$/, kind: 'intel-qe-identity', method: 'GET', query: none, keepHeaders: ['sgx-enclave-identity-issuer-chain', 'enclave-identity-issuer-chain'] },
  { source: 'intel', re: /^\/sgx\/certification\/v4\/pckcrl$/, kind: 'intel-pck-crl', method: 'GET', query: (n, v) => (n === 'ca' && /^(platform|processor)$/.test(v)) || (n === 'encoding' && v === 'der'), keepHeaders: ['sgx-pck-crl-issuer-chain'] },
  { source: 'intelCerts', re: /^\/IntelSGXRootCA\.(der|crl)$/, kind: 'intel-root-crl', method: 'GET', query: none },
  { source: 'nvidiaRim', re: /^\/v1\/rim\/[A-Za-z0-9_.-]{1,200}$/, kind: 'nvidia-rim', method: 'GET', query: none },
  { source: 'nvidiaOcsp', re: /^\/?$/, kind: 'nvidia-ocsp', method: 'POST', query: none },
];

/** URL path segment under /v1/collateral/ naming each source. */
export const SOURCE_SEGMENT: Record<keyof VendorBases, string> = {
  amd: 'amd',
  intel: 'intel',
  intelCerts: 'intel-certs',
  nvidiaRim: 'nvidia-rim',
  nvidiaOcsp: 'nvidia-ocsp',
};

/** Maps `<segment>` + vendor path + query to a route, or undefined when the request is not collateral we serve. */
export function routeFor(segment: string, path: string, query: URLSearchParams, method: string, bases: VendorBases = VENDOR_BASES): CollateralRoute | undefined {
  const source = (Object.keys(SOURCE_SEGMENT) as (keyof VendorBases)[]).find((k) => SOURCE_SEGMENT[k] === segment);
  if (!source) return undefined;
  for (const p of PATTERNS) {
    if (p.source !== source || p.method !== method || !p.re.test(path)) continue;
    const q = new URLSearchParams();
    for (const [n, v] of query) {
      if (!p.query(n, v)) return undefined;
      q.append(n, v);
    }
    q.sort();
    const qs = q.toString();
    const base = bases[source].replace(/\/$/, '');
    return { kind: p.kind, method: p.method, upstream: `${base}${path === '/' ? '' : path}${qs ? `?${qs}` : ''}`, keepHeaders: p.keepHeaders ?? [] };
  }
  return undefined;
}
