/**
 * Revocation collateral from the host shim's cache (DESIGN.md §1, §4): when a client asks for it, an SEV-SNP bundle
 * that carries no CRL is completed with AMD's CRL for its product, fetched from the shim
 * (`/v1/collateral/amd/<vcek|vlek>/v1/<product>/crl`, mirroring AMD KDS). The shim is trusted for nothing: the CRL
 * is verified against the same (pinned or explicitly trusted) ARK as the chain, and its dates are checked; a CRL
 * the shim cannot serve fails verification closed (COLLATERAL_UNAVAILABLE) instead of skipping revocation.
 */
import type { EvidenceBundle } from '../attestation/bundle.ts';
import { collateralError } from '../attestation/errors.ts';
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
  if (base !== 'sev-snp' || (bundle.collateral.crls?.length ?? 0) > 0) return bundle;
  const report = parseReport(bundle.evidence);
  const product = (report.cpuid && productFromCpuid(report.cpuid)) ?? productFromAsk(bundle.certs[1]);
  if (!product) throw collateralError('COLLATERAL_UNAVAILABLE', 'cannot tell the AMD product of the report to fetch its CRL');
  const kind = report.signerInfo.signingKey === 'vlek' ? 'vlek' : 'vcek';
  const url = `${src.base.replace(/\/+$/, '')}/v1/collateral/amd/${kind}/v1/${product}/crl`;
  let r: Response;
  try {
    r = await src.fetch(url, { method: 'GET' });
  } catch (e) {
    throw collateralError('COLLATERAL_UNAVAILABLE', `could not fetch AMD's CRL for ${product} from ${src.base}`, { cause: e });
  }
  if (!r.ok) {
    await r.body?.cancel();
    throw collateralError('COLLATERAL_UNAVAILABLE', `the collateral cache answered HTTP ${r.status} for AMD's CRL for ${product}`);
  }
  const crl = new Uint8Array(await r.arrayBuffer());
  if (crl.length === 0 || crl.length > MAX_CRL) throw collateralError('COLLATERAL_UNAVAILABLE', 'the CRL served is empty or too large');
  return { ...bundle, collateral: { ...bundle.collateral, crls: [crl] } };
}

/** Report v2 has no CPUID: the ASK's subject names the product (AMD KDS "SEV-Milan", "SEV-VLEK-Genoa", ...). */
function productFromAsk(der: Uint8Array | undefined): 'Milan' | 'Genoa' | 'Turin' | undefined {
  if (!der) return undefined;
  const s = new TextDecoder('latin1').decode(der);
  const m = /SEV-(?:VLEK-)?(Milan|Genoa|Turin)/.exec(s);
  return m ? (m[1] as 'Milan' | 'Genoa' | 'Turin') : undefined;
}
