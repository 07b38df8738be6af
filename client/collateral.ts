/**
 * Collateral from the host shim's cache (DESIGN.md §1, §4): when a client asks for it, an SEV-SNP bundle that
 * carries no certificates is completed with the VCEK for its chip and reported TCB and AMD's ASK/ARK chain, and one
 * that carries no CRL with AMD's CRL for its product, all fetched from the shim (`/v1/collateral/amd/...`,
 * mirroring AMD KDS). The shim is trusted for nothing: the chain is verified up to the pinned ARK (or, in sim, the
 * explicitly trusted root), the CRL against the same ARK with its dates checked; what the shim cannot serve fails
 * verification closed (COLLATERAL_UNAVAILABLE) instead of skipping a check.
 */
import type { EvidenceBundle } from '../attestation/bundle.ts';
import { hex } from '../attestation/bytes.ts';
import { collateralError } from '../attestation/errors.ts';
import { certificatesFrom } from '../attestation/x509/pem.ts';
import { parseReport, productFromCpuid } from '../attestation/sevsnp/abi.ts';
import type { FetchLike } from './attest.ts';

export interface CollateralSource {
  /** The host shim's base URL (it serves /v1/collateral/...). */
  readonly base: string;
  readonly fetch: FetchLike;
}

const MAX_CRL = 2 * 1024 * 1024;

export async function withCollateral(bundle: EvidenceBundle, src: CollateralSource): Promise<EvidenceBundle> {
  const base = bundle.platform.replace(/^sim-/, '');
  if (base !== 'sev-snp') return bundle;
  const needCerts = bundle.certs.length === 0;
  const needCrl = (bundle.collateral.crls?.length ?? 0) === 0;
  if (!needCerts && !needCrl) return bundle;
  const report = parseReport(bundle.evidence);
  const product = (report.cpuid && productFromCpuid(report.cpuid)) ?? productFromAsk(bundle.certs[1]);
  if (!product) throw collateralError('COLLATERAL_UNAVAILABLE', 'cannot tell the AMD product of the report to fetch its collateral');
  const kind = report.signerInfo.signingKey === 'vlek' ? 'vlek' : 'vcek';
  const root = `${src.base.replace(/\/+$/, '')}/v1/collateral/amd/${kind}/v1/${product}`;
  let certs = bundle.certs;
  if (needCerts) {
    // VLEKs are issued to cloud providers and not served by chip id: only VCEKs can be completed this way.
    if (kind !== 'vcek') throw collateralError('COLLATERAL_UNAVAILABLE', 'the bundle carries no VLEK certificate and VLEKs cannot be fetched by chip id');
    const t = report.reportedTcb;
    const spl = new URLSearchParams({ blSPL: String(t.bootloader), teeSPL: String(t.tee), snpSPL: String(t.snp), ucodeSPL: String(t.microcode), ...(t.fmc !== undefined ? { fmcSPL: String(t.fmc) } : {}) });
    const vcek = certificatesFrom(await get(src, `${root}/${hex(report.chipId)}?${spl}`, 'the VCEK'));
    const chain = certificatesFrom(await get(src, `${root}/cert_chain`, "AMD's ASK/ARK chain"));
    if (vcek.length !== 1 || chain.length !== 2) throw collateralError('COLLATERAL_UNAVAILABLE', 'the VCEK or the ASK/ARK chain served does not hold the expected certificates');
    certs = [vcek[0]!, chain[0]!, chain[1]!];
  }
  const crls = needCrl ? [await get(src, `${root}/crl`, `AMD's CRL for ${product}`)] : bundle.collateral.crls;
  return { ...bundle, certs, collateral: { ...bundle.collateral, ...(crls ? { crls } : {}) } };
}

async function get(src: CollateralSource, url: string, what: string): Promise<Uint8Array> {
  let r: Response;
  try {
    r = await src.fetch(url, { method: 'GET' });
  } catch (e) {
    throw collateralError('COLLATERAL_UNAVAILABLE', `could not fetch ${what} from ${src.base}`, { cause: e });
  }
  if (!r.ok) {
    await r.body?.cancel();
    throw collateralError('COLLATERAL_UNAVAILABLE', `the collateral cache answered HTTP ${r.status} for ${what}`);
  }
  const b = new Uint8Array(await r.arrayBuffer());
  if (b.length === 0 || b.length > MAX_CRL) throw collateralError('COLLATERAL_UNAVAILABLE', `${what} served is empty or too large`);
  return b;
}

/** Report v2 has no CPUID: the ASK's subject names the product (AMD KDS "SEV-Milan", "SEV-VLEK-Genoa", ...). */
function productFromAsk(der: Uint8Array | undefined): 'Milan' | 'Genoa' | 'Turin' | undefined {
  if (!der) return undefined;
  const s = new TextDecoder('latin1').decode(der);
  const m = /SEV-(?:VLEK-)?(Milan|Genoa|Turin)/.exec(s);
  return m ? (m[1] as 'Milan' | 'Genoa' | 'Turin') : undefined;
}
