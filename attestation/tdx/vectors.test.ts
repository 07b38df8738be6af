/**
 * Real TDX quotes and collateral from test/vectors/tdx (PROVENANCE.md §2): each quote verifies (PCK chain to the
 * pinned Intel SGX Root CA, QE report signature, QE binding, quote signature) and yields the listed values; the
 * shipped collateral gives the TCB status dcap-qvl / go-tdx-guest expect.
 */
import { describe, expect, it } from 'vitest';
import { hex } from '../bytes.ts';
import { isGmError } from '../errors.ts';
import type { TrustStore } from '../trust.ts';
import { parseCertificate } from '../x509/cert.ts';
import { pemDecodeAll } from '../x509/pem.ts';
import { verifySignature } from '../x509/signature.ts';
import { hasVectors, trustStore, vector, vectorText } from '../../test/vectors.ts';
import { parseQuote } from './abi.ts';
import { collateralFromDcapQvl, rawJsonMember, signedFromPcs } from './collateral.ts';
import { DEFAULT_TDX_POLICY, verifyTdx } from './index.ts';
import { verifyPckChain } from './pck.ts';
import { checkQeIdentity, checkTcbInfoMatchesPck, converge, matchTcbLevel, tdxModuleStatus } from './tcb.ts';
import { parseQeIdentity, parseTcbInfo } from './tcbinfo.ts';
import { Checks } from '../report.ts';
import { validateTdx } from './validate.ts';
import { verifyQeReportData, verifyQeReportSignature, verifyQuoteSignature } from './verify.ts';

const STATUS_QUOTE_4 = 'UpToDate';
const SPR_E4_SIGNED_END = 4935; // go-tdx-guest appended "extra bytes(only for testing purpose)" after this

function quoteBytes(rel: string): Uint8Array {
  const b = vector(`tdx/${rel}`);
  return rel.endsWith('SPR_E4.dat') ? b.subarray(0, SPR_E4_SIGNED_END) : b;
}

/** Signature layer only, at a time inside the PCK leaf's validity. */
async function verifyQuoteOnly(rel: string, now: Date, store: TrustStore) {
  const q = parseQuote(quoteBytes(rel));
  const pck = await verifyPckChain(q.certification.pckCertChain, store.get('intel-sgx-root'), now);
  await verifyQeReportSignature(q, pck.leaf);
  await verifyQeReportData(q);
  await verifyQuoteSignature(q);
  return { q, pck };
}

const REAL = [
  { rel: 'go-tdx-guest/tdx_prod_quote_SPR_E4.dat', now: '2023-07-01', version: 4, fmspc: '50806f000000', mrTd: '6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb', qeSvn: 4,
    extra: (q: ReturnType<typeof parseQuote>) => {
      expect(hex(q.body.tdAttributes)).toBe('0000004000000000');
      expect(hex(q.body.xfam)).toBe('e71a060000000000');
      expect(hex(q.body.teeTcbSvn).startsWith('03000400')).toBe(true);
      expect(hex(q.body.mrSeam).startsWith('2fd279c1')).toBe(true);
      expect(hex(q.body.rtmr[0]).startsWith('2927da70')).toBe(true);
      expect(hex(q.body.reportData).startsWith('6c62dec1')).toBe(true);
    } },
  { rel: 'go-tdx-guest/quote_v5_sample.dat', now: '2026-02-03', version: 5, bodyType: 3, fmspc: '90c06f000000', mrTd: '7348651a34b2d2d3462822e3a750ec6110125f36757c78480bbfc69cc0d21fb001a1ced3ee19747dda8f750c3bc8f876', qeSvn: 7,
    extra: (q: ReturnType<typeof parseQuote>) => {
      expect(hex(q.body.teeTcbSvn).startsWith('0b0104')).toBe(true);
      expect(hex(q.body.teeTcbSvn2!).startsWith('0d0104')).toBe(true);
    } },
  { rel: 'go-tdx-guest/cos-113-tdx-quote.dat', now: '2025-01-01', version: 4, fmspc: '00806f050000', mrTd: 'dae67181', qeSvn: 6,
    extra: (q: ReturnType<typeof parseQuote>) => {
      expect(hex(q.body.rtmr[0]).startsWith('3fa2f61f')).toBe(true);
      expect(hex(q.body.rtmr[1]).startsWith('f62dbc07')).toBe(true);
      expect(hex(q.body.rtmr[2]).startsWith('4969684d')).toBe(true);
      expect(q.padding).toBe(8000 - 4935);
    } },
  { rel: 'dcap-qvl/tdx_quote', now: '2025-06-25', version: 4, fmspc: 'b0c06f000000', mrTd: '91eb2b44', qeSvn: 6, extra: () => {} },
  { rel: 'dcap-qvl/tdx_quote_outdated', now: '2026-03-01', version: 5, bodyType: 3, fmspc: '90c06f000000', mrTd: '273828c4', qeSvn: 7,
    extra: (q: ReturnType<typeof parseQuote>) => expect(q.body.rtmr.every((r) => r.every((x) => x === 0))).toBe(true) },
  { rel: 'trustee/tdx_quote_4.dat', now: '2024-01-01', version: 4, fmspc: '50806f000000', mrTd: '705ee938', qeSvn: 4,
    extra: (q: ReturnType<typeof parseQuote>) => expect(hex(q.body.tdAttributes)).toBe('0100001000000000') },
  { rel: 'trustee/tdx_quote_5.dat', now: '2025-01-01', version: 5, bodyType: 3, fmspc: '90c06f000000', mrTd: 'dfba221b', qeSvn: 6,
    extra: (q: ReturnType<typeof parseQuote>) => {
      expect(hex(q.body.mrServiceTd!).startsWith('383c87d3')).toBe(true);
      expect(hex(q.body.mrServiceTd!).endsWith('7a5a033d')).toBe(true);
    } },
];

/** The Intel SGX TCB Signing key, from the dcap-qvl collateral's issuer chain (same key signs the go-tdx-guest samples). */
function tcbSigningChainPem(): string {
  return (JSON.parse(vectorText('tdx/dcap-qvl/tdx_quote_collateral.json')) as { tcb_info_issuer_chain: string }).tcb_info_issuer_chain;
}

/** Checks a PCS sample body's signature with the TCB Signing key and returns the signed text. */
async function sampleBody(rel: string, member: 'tcbInfo' | 'enclaveIdentity'): Promise<string> {
  const text = vectorText(`tdx/go-tdx-guest/${rel}`);
  const signer = parseCertificate(pemDecodeAll(tcbSigningChainPem())[0]!);
  const body = rawJsonMember(text, member);
  const sig = (JSON.parse(text) as { signature: string }).signature;
  await verifySignature(signer.spki, 'ecdsa-p256-sha256', new TextEncoder().encode(body), Uint8Array.from(sig.match(/../g)!.map((x) => parseInt(x, 16))), {
    allowed: ['ecdsa-p256-sha256'], failCode: 'TDX_COLLATERAL_SIGNATURE', what: rel, ecdsaFormat: 'p1363',
  });
  return body;
}

describe.skipIf(!hasVectors)('TDX real quotes', () => {
  for (const v of REAL) {
    it(`${v.rel}: signatures, QE binding, PCK chain and PROVENANCE values`, async () => {
      const { q, pck } = await verifyQuoteOnly(v.rel, new Date(`${v.now}T00:00:00Z`), await trustStore());
      expect(q.header.version).toBe(v.version);
      expect(q.body.bodyType).toBe(v.bodyType ?? 2);
      expect(hex(q.header.qeVendorId)).toBe('939a7233f79c4ca9940a0db3957f0607');
      expect(hex(pck.extensions.fmspc)).toBe(v.fmspc);
      expect(hex(q.body.mrTd).startsWith(v.mrTd)).toBe(true);
      expect(hex(q.certification.qeReport.mrSigner).startsWith('dc9e2a7c')).toBe(true);
      expect(q.certification.qeReport.isvProdId).toBe(2);
      expect(q.certification.qeReport.isvSvn).toBe(v.qeSvn);
      v.extra(q);
    });
  }

  it('trustee tdx_quote_4: every header and body field equals trustee\'s parse_tdx_claims_expected.json', () => {
    const want = (JSON.parse(vectorText('tdx/trustee/parse_tdx_claims_expected.json')) as { quote: { header: Record<string, string>; body: Record<string, string> } }).quote;
    const q = parseQuote(vector('tdx/trustee/tdx_quote_4.dat'));
    const raw = vector('tdx/trustee/tdx_quote_4.dat');
    expect({
      version: hex(raw.subarray(0, 2)), att_key_type: hex(raw.subarray(2, 4)), tee_type: hex(raw.subarray(4, 8)), reserved: hex(q.header.reserved),
      vendor_id: hex(q.header.qeVendorId), user_data: hex(q.header.userData),
    }).toEqual(want.header);
    const b = q.body;
    expect({
      tcb_svn: hex(b.teeTcbSvn), mr_seam: hex(b.mrSeam), mrsigner_seam: hex(b.mrSignerSeam), seam_attributes: hex(b.seamAttributes), td_attributes: hex(b.tdAttributes),
      xfam: hex(b.xfam), mr_td: hex(b.mrTd), mr_config_id: hex(b.mrConfigId), mr_owner: hex(b.mrOwner), mr_owner_config: hex(b.mrOwnerConfig),
      rtmr_0: hex(b.rtmr[0]), rtmr_1: hex(b.rtmr[1]), rtmr_2: hex(b.rtmr[2]), rtmr_3: hex(b.rtmr[3]), report_data: hex(b.reportData),
    }).toEqual(want.body);
  });

  it('go-tdx-guest SPR_E4 as shipped (with appended non-zero bytes) is refused by the strict parser', () => {
    expect(() => parseQuote(vector('tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat'))).toThrow(expect.objectContaining({ code: 'TDX_QUOTE_TRAILING_BYTES' }));
  });

  it('dcap-qvl tdx_quote with its collateral: UpToDate, no advisories, every check passes', async () => {
    const collateral = collateralFromDcapQvl(vectorText('tdx/dcap-qvl/tdx_quote_collateral.json'));
    const { claims, report } = await verifyTdx(vector('tdx/dcap-qvl/tdx_quote'), { now: new Date('2025-06-25T00:00:00Z'), trustStore: await trustStore(), collateral });
    expect(claims.tcbStatus).toBe('UpToDate');
    expect(claims.advisoryIds).toEqual([]);
    expect(claims.fmspc).toBe('b0c06f000000');
    expect(claims.tcbEvaluationDataNumber).toBe(17);
    expect(claims.tdxModule).toEqual({ id: 'TDX_01', status: 'UpToDate' });
    expect(report.verified).toBe(true);
    expect(report.checks.map((c) => c.id)).toEqual(expect.arrayContaining(['tdx.revocation.root', 'tdx.revocation.pck', 'tdx.collateral.tcbInfo', 'tdx.collateral.qeIdentity', 'tdx.quote.signature']));
    expect(report.checks.filter((c) => !c.id.startsWith('tdx.policy.')).every((c) => c.status === 'pass')).toBe(true);
    // The default policy sets three rules; every other policy rule is named in the report as not checked.
    const policyRows = report.checks.filter((c) => c.id.startsWith('tdx.policy.'));
    expect(policyRows.filter((c) => c.status === 'pass').map((c) => c.id)).toEqual(['tdx.policy.tcbStatus', 'tdx.policy.advisoryIds', 'tdx.policy.debug']);
    expect(policyRows.filter((c) => c.status === 'skip').map((c) => c.id)).toEqual(expect.arrayContaining(['tdx.policy.mrTd', 'tdx.policy.rtmr0', 'tdx.policy.rtmr3', 'tdx.policy.mrConfigId', 'tdx.policy.xfam', 'tdx.policy.reportData', 'tdx.policy.minTeeTcbSvn', 'tdx.policy.maxCollateralAge']));
    expect(policyRows.every((c) => c.status !== 'fail')).toBe(true);
  });

  it('dcap-qvl tdx_quote outside its collateral window: TDX_TCB_INFO_EXPIRED', async () => {
    const collateral = collateralFromDcapQvl(vectorText('tdx/dcap-qvl/tdx_quote_collateral.json'));
    await expect(verifyTdx(vector('tdx/dcap-qvl/tdx_quote'), { now: new Date('2025-08-01T00:00:00Z'), trustStore: await trustStore(), collateral, checkRevocation: false }))
      .rejects.toMatchObject({ code: 'TDX_TCB_INFO_EXPIRED', kind: 'collateral' });
  });

  it('dcap-qvl tdx_quote_outdated: not UpToDate (older than every TCB level) and rejected', async () => {
    const collateral = collateralFromDcapQvl(vectorText('tdx/dcap-qvl/tdx_quote_outdated_collateral.json'));
    const err = await verifyTdx(vector('tdx/dcap-qvl/tdx_quote_outdated'), { now: new Date('2026-03-01T00:00:00Z'), trustStore: await trustStore(), collateral })
      .then(() => undefined, (e: unknown) => e);
    expect(isGmError(err, 'TDX_TCB_NOT_SUPPORTED')).toBe(true);
    expect((err as Error).message).toContain('SGX TCB component 8 is 3, needs 5');
    const rows = (err as { report: { checks: { id: string; status: string }[] } }).report.checks;
    expect(rows.find((r) => r.id === 'tdx.quote.signature')?.status).toBe('pass');
    expect(rows.at(-1)).toMatchObject({ id: 'tdx.tcb.level', status: 'fail' });
  });

  it('go-tdx-guest v5 sample is UpToDate per sample_tcbinfo_response_v5 (PCS form + URL-encoded issuer chain)', async () => {
    const tcbInfo = signedFromPcs(vectorText('tdx/go-tdx-guest/sample_tcbinfo_response_v5'), encodeURIComponent(tcbSigningChainPem()), 'tcbInfo');
    // No CRLs or QE identity of that date ship with the sample: verified without them, and the report says so.
    const { claims, report } = await verifyTdx(vector('tdx/go-tdx-guest/quote_v5_sample.dat'), {
      now: new Date('2026-02-03T00:00:00Z'), trustStore: await trustStore(), collateral: { tcbInfo }, checkRevocation: false, requireQeIdentity: false,
    });
    expect(claims.tcbStatus).toBe('UpToDate');
    expect(claims.tcbDate).toBe('2024-11-13T00:00:00Z');
    expect(claims.tdxModule).toEqual({ id: 'TDX_01', status: 'UpToDate' });
    expect(claims.tcbEvaluationDataNumber).toBe(18);
    expect(report.checks.filter((c) => c.status === 'skip' && !c.id.startsWith('tdx.policy.')).map((c) => c.id)).toEqual(['tdx.revocation.root', 'tdx.revocation.pck', 'tdx.collateral.qeIdentity']);
  });

  it('FMSPC 90c06f000000 quotes against the dcap-qvl 2026 collateral of that FMSPC, CRLs and QE identity included', async () => {
    const collateral = collateralFromDcapQvl(vectorText('tdx/dcap-qvl/tdx_quote_outdated_collateral.json'));
    const opts = { now: new Date('2026-03-01T00:00:00Z'), trustStore: await trustStore(), collateral };
    const v5 = await verifyTdx(vector('tdx/go-tdx-guest/quote_v5_sample.dat'), opts);
    expect(v5.claims.tcbStatus).toBe('UpToDate');
    expect(v5.claims.qe).toEqual({ isvSvn: 7, status: 'UpToDate' });
    expect(v5.report.checks.filter((c) => !c.id.startsWith('tdx.policy.')).every((c) => c.status === 'pass')).toBe(true);
    expect(v5.report.verified).toBe(true);
    await expect(verifyTdx(vector('tdx/trustee/tdx_quote_5.dat'), opts)).rejects.toMatchObject({ code: 'TDX_TCB_NOT_SUPPORTED' });
  });

  it('go-tdx-guest v4 (FMSPC 50806f000000) samples: trustee tdx_quote_4 gets a status from sample_tcbInfo_response + sample_qeIdentity_response', async () => {
    const tcbInfo = parseTcbInfo(await sampleBody('sample_tcbInfo_response', 'tcbInfo'));
    const qeIdentity = parseQeIdentity(await sampleBody('sample_qeIdentity_response', 'enclaveIdentity'));
    expect(tcbInfo.tcbEvaluationDataNumber).toBe(15);
    const { q, pck } = await verifyQuoteOnly('trustee/tdx_quote_4.dat', new Date('2023-07-01T00:00:00Z'), await trustStore());
    checkTcbInfoMatchesPck(tcbInfo, pck.extensions);
    expect(tdxModuleStatus(tcbInfo, q.body)).toBeUndefined(); // TDX 1.0 module (TEE_TCB_SVN[1] = 0): identity matched, no module levels
    const qe = checkQeIdentity(qeIdentity, q.certification.qeReport);
    expect(qe.tcbStatus).toBe('UpToDate');
    const level = matchTcbLevel(tcbInfo, pck.extensions, q.body);
    expect(converge(level.tcbStatus, qe.tcbStatus)).toBe(STATUS_QUOTE_4);
  });

  it('go-tdx-guest SPR_E4 (pre-production stepping) is older than every level of that TCB info: TDX_TCB_NOT_SUPPORTED', async () => {
    const tcbInfo = parseTcbInfo(await sampleBody('sample_tcbInfo_response', 'tcbInfo'));
    const { q, pck } = await verifyQuoteOnly('go-tdx-guest/tdx_prod_quote_SPR_E4.dat', new Date('2023-07-01T00:00:00Z'), await trustStore());
    checkTcbInfoMatchesPck(tcbInfo, pck.extensions);
    expect(() => matchTcbLevel(tcbInfo, pck.extensions, q.body)).toThrow(expect.objectContaining({ code: 'TDX_TCB_NOT_SUPPORTED' }));
  });

  it('trustee tdx_quote_4 is rejected by the default policy for DEBUG', async () => {
    const tcbInfo = parseTcbInfo(await sampleBody('sample_tcbInfo_response', 'tcbInfo'));
    const now = new Date('2023-07-01T00:00:00Z');
    const { q, pck } = await verifyQuoteOnly('trustee/tdx_quote_4.dat', now, await trustStore());
    const level = matchTcbLevel(tcbInfo, pck.extensions, q.body);
    const tcb = { status: level.tcbStatus, advisoryIds: level.advisoryIds, platformStatus: level.tcbStatus, tcbDate: level.tcbDate, tdxModule: undefined, qe: undefined };
    const checks = new Checks('Intel TDX quote');
    let err: unknown;
    try {
      validateTdx({ body: q.body, tcb, tcbInfoIssueDate: tcbInfo.issueDate, now }, DEFAULT_TDX_POLICY, checks);
    } catch (e) {
      err = e;
    }
    expect(isGmError(err, 'TDX_POLICY_VIOLATION')).toBe(true);
    expect(checks.failures.map((f) => f.code)).toContain('TDX_POLICY_DEBUG');
    expect(checks.failures.find((f) => f.code === 'TDX_POLICY_DEBUG')?.detail).toContain('DEBUG is set');
  });
});
