/**
 * AMD VCEK / VLEK certificate extensions (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
 * Specification", pub. 57230, §3 Table 8; VLEK: pub. 58369). Under 1.3.6.1.4.1.3704.1: .1 structVersion INTEGER,
 * .2 productName IA5String ("Milan-B0", "Genoa", "Turin"), .3.1 blSPL, .3.2 teeSPL, .3.3 snpSPL, .3.8 ucodeSPL,
 * .3.9 fmcSPL (Turin) INTEGERs, .4 hwID (raw octets: 64 bytes, 8 on Turin), .5 csp_id IA5String (VLEK only).
 */
import { rejected } from '../errors.ts';
import type { Certificate } from '../x509/cert.ts';
import { TAG, parseDer, readSmallInt, readString } from '../x509/der.ts';
import type { AmdProduct } from './abi.ts';

export const AMD_OID = {
  structVersion: '1.3.6.1.4.1.3704.1.1',
  productName: '1.3.6.1.4.1.3704.1.2',
  blSpl: '1.3.6.1.4.1.3704.1.3.1',
  teeSpl: '1.3.6.1.4.1.3704.1.3.2',
  snpSpl: '1.3.6.1.4.1.3704.1.3.3',
  ucodeSpl: '1.3.6.1.4.1.3704.1.3.8',
  fmcSpl: '1.3.6.1.4.1.3704.1.3.9',
  hwId: '1.3.6.1.4.1.3704.1.4',
  cspId: '1.3.6.1.4.1.3704.1.5',
} as const;

export type EndorsementKind = 'vcek' | 'vlek';

export interface AmdExtensions {
  readonly kind: EndorsementKind;
  readonly structVersion: number;
  /** As written in the certificate, e.g. "Milan-B0". */
  readonly productName: string;
  /** The product family the name starts with, if known. */
  readonly product: AmdProduct | undefined;
  readonly blSpl: number;
  readonly teeSpl: number;
  readonly snpSpl: number;
  readonly ucodeSpl: number;
  readonly fmcSpl: number | undefined;
  /** VCEK only. */
  readonly hwId: Uint8Array | undefined;
  /** VLEK only: the cloud service provider the key was issued to. */
  readonly cspId: string | undefined;
}

const extErr = (msg: string) => rejected('SNP_CERT_EXTENSION', `VCEK/VLEK certificate: ${msg}`);

function intExt(cert: Certificate, oid: string, name: string): number {
  const e = cert.extensions.get(oid);
  if (!e) throw extErr(`missing ${name} extension (${oid})`);
  try {
    const v = parseDer(e.value);
    if (v.tag !== TAG.INTEGER) throw new Error('not an INTEGER');
    const n = readSmallInt(v);
    if (n > 255) throw new Error(`value ${n} out of range`);
    return n;
  } catch (err) {
    throw rejected('SNP_CERT_EXTENSION', `VCEK/VLEK certificate: ${name} extension is not a small INTEGER`, { cause: err });
  }
}

function strExt(cert: Certificate, oid: string, name: string): string | undefined {
  const e = cert.extensions.get(oid);
  if (!e) return undefined;
  try {
    const v = parseDer(e.value);
    if (v.tag !== TAG.IA5String) throw new Error('not an IA5String');
    return readString(v);
  } catch (err) {
    throw rejected('SNP_CERT_EXTENSION', `VCEK/VLEK certificate: ${name} extension is not an IA5String`, { cause: err });
  }
}

/**
 * hwID: 64 bytes, 8 on Turin (KDS spec Table 8). KDS has served it both as the raw octets and DER-wrapped in a
 * further OCTET STRING (trustee's "legacy" and "new" VCEK formats); both are accepted, at the exact length only.
 */
function hwIdValue(v: Uint8Array, len: number, productName: string): Uint8Array {
  if (v.length === len) return v;
  if (v.length === len + 2 && v[0] === TAG.OCTET_STRING && v[1] === len) return v.subarray(2);
  throw extErr(`hwID is ${v.length} bytes, expected ${len} for ${productName}`);
}

export function productFromName(productName: string): AmdProduct | undefined {
  const family = productName.split('-')[0];
  return family === 'Milan' || family === 'Genoa' || family === 'Turin' ? family : undefined;
}

/**
 * Reads the AMD extensions. A certificate with csp_id is a VLEK, one with hwID a VCEK; having both or neither is
 * an error, as is a missing SPL or product name.
 */
export function readAmdExtensions(cert: Certificate): AmdExtensions {
  const hw = cert.extensions.get(AMD_OID.hwId);
  const cspId = strExt(cert, AMD_OID.cspId, 'csp_id');
  if (hw && cspId !== undefined) throw extErr('has both hwID (VCEK) and csp_id (VLEK)');
  if (!hw && cspId === undefined) throw extErr('has neither hwID (VCEK) nor csp_id (VLEK)');
  const productName = strExt(cert, AMD_OID.productName, 'productName');
  if (productName === undefined) throw extErr(`missing productName extension (${AMD_OID.productName})`);
  const product = productFromName(productName);
  const hasFmc = cert.extensions.has(AMD_OID.fmcSpl);
  if (product === 'Turin' && !hasFmc) throw extErr('Turin certificate without fmcSPL');
  if (product !== 'Turin' && hasFmc) throw extErr(`${productName} certificate with fmcSPL`);
  const hwId = hw ? hwIdValue(hw.value, product === 'Turin' ? 8 : 64, productName) : undefined;
  return {
    kind: hw ? 'vcek' : 'vlek',
    structVersion: intExt(cert, AMD_OID.structVersion, 'structVersion'),
    productName,
    product,
    blSpl: intExt(cert, AMD_OID.blSpl, 'blSPL'),
    teeSpl: intExt(cert, AMD_OID.teeSpl, 'teeSPL'),
    snpSpl: intExt(cert, AMD_OID.snpSpl, 'snpSPL'),
    ucodeSpl: intExt(cert, AMD_OID.ucodeSpl, 'ucodeSPL'),
    fmcSpl: hasFmc ? intExt(cert, AMD_OID.fmcSpl, 'fmcSPL') : undefined,
    hwId,
    cspId,
  };
}
