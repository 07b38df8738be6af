/**
 * `gm verify tdx --quote FILE [--collateral FILE ...] [--policy FILE] [--now ISO-8601] [--json]
 *  [--ccel-log FILE [--ccel-table FILE]] [--no-revocation] [--no-qe-identity]`
 *
 * Verifies an Intel TDX quote against the pinned Intel SGX Root CA from the trust directory. The quote file may be raw,
 * hex (with or without 0x), base64 or a JSON envelope (attestation/encoding.ts); the report's first row says which.
 * Without --collateral, everything that needs none is verified (PCK chain, QE report signature, attestation key
 * binding, quote signature) and the TCB status is SKIP "no collateral": exit 0 only under a policy with
 * `"allowUnknownTcbStatus": true`, otherwise 1 with every signature row shown.
 * Each --collateral file is recognized by its content:
 *  - dcap-qvl combined collateral JSON (`tcb_info`, `qe_identity`, issuer chains, CRLs): everything at once;
 *  - Intel PCS responses: `{"tcbInfo":…}` / `{"enclaveIdentity":…}` bodies, plus the issuer chain as a PEM file or
 *    the URL-encoded `TCB-Info-Issuer-Chain` header value;
 *  - CRLs (DER or PEM): the one issued by the Intel SGX Root CA is the root CA CRL, the other the PCK CRL.
 * --no-revocation / --no-qe-identity verify without CRLs / QE identity and say so in the report (SKIP rows).
 * Exit 0 verified, 1 rejected, 2 usage or configuration error.
 */
import { nodeEcdsaP256 } from './node-verifiers.ts';
import * as fsp from 'node:fs/promises';
import { homedir } from 'node:os';
import { GmError, configError } from '../attestation/errors.ts';
import { type SignedCollateral, type TdxCollateral, type TdxPolicy, collateralFromDcapQvl, signedFromPcs, tdxPolicyFromJson, verifyTdx } from '../attestation/tdx/index.ts';
import { loadTrustStore, trustDirFrom } from '../attestation/trust.ts';
import { commonName } from '../attestation/x509/cert.ts';
import { parseCrl } from '../attestation/x509/crl.ts';
import { isPem } from '../attestation/x509/pem.ts';
import type { VerifyTdxFlags } from './commands.ts';
import { isoFlag } from './common.ts';
import { formatReport, reportJson } from './format.ts';
import type { Io } from './io.ts';
import { decodeEvidence, withInputRow } from '../attestation/encoding.ts';

interface Pieces {
  combined?: TdxCollateral;
  tcbInfoBody?: string;
  qeIdentityBody?: string;
  issuerChain?: string;
  rootCaCrl?: Uint8Array;
  pckCrl?: Uint8Array;
}

/** Classifies one collateral file by content (see the module comment). */
function addCollateralFile(p: Pieces, file: string, bytes: Uint8Array): void {
  const text = new TextDecoder().decode(bytes).trim();
  const once = <K extends keyof Pieces>(k: K, v: Pieces[K]) => {
    if (p[k] !== undefined) throw configError('TDX_COLLATERAL_FILES', `${file}: a second ${k} was given`);
    p[k] = v;
  };
  if (text.startsWith('{')) {
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      throw configError('TDX_COLLATERAL_FILES', `${file}: not valid JSON`, { cause: e });
    }
    if ('tcb_info' in j) return once('combined', collateralFromDcapQvl(text));
    if ('tcbInfo' in j) return once('tcbInfoBody', text);
    if ('enclaveIdentity' in j) return once('qeIdentityBody', text);
    throw configError('TDX_COLLATERAL_FILES', `${file}: JSON is neither dcap-qvl collateral nor a PCS tcbInfo / enclaveIdentity response`);
  }
  if (text.includes('BEGIN%20CERTIFICATE') || text.includes('-----BEGIN CERTIFICATE-----')) return once('issuerChain', text);
  if (isPem(bytes) || bytes[0] === 0x30) {
    const crl = parseCrl(bytes);
    const der = crl.der;
    if (commonName(crl.issuer) === 'Intel SGX Root CA') return once('rootCaCrl', der);
    return once('pckCrl', der);
  }
  throw configError('TDX_COLLATERAL_FILES', `${file}: not a collateral file gm recognizes (JSON, PEM chain, CRL)`);
}

function assemble(p: Pieces): TdxCollateral {
  const pcs = (body: string | undefined, member: 'tcbInfo' | 'enclaveIdentity'): SignedCollateral | undefined => {
    if (body === undefined) return undefined;
    if (!p.issuerChain) throw configError('TDX_COLLATERAL_FILES', `a PCS ${member} response needs its issuer chain (PEM file or the URL-encoded header value) as another --collateral`);
    return signedFromPcs(body, p.issuerChain, member);
  };
  const tcbInfo = pcs(p.tcbInfoBody, 'tcbInfo') ?? p.combined?.tcbInfo;
  if (!tcbInfo) throw configError('TDX_COLLATERAL_FILES', 'no TCB info given: pass --collateral with dcap-qvl collateral or a PCS tcbInfo response');
  return {
    tcbInfo,
    qeIdentity: pcs(p.qeIdentityBody, 'enclaveIdentity') ?? p.combined?.qeIdentity,
    rootCaCrl: p.rootCaCrl ?? p.combined?.rootCaCrl,
    pckCrl: p.pckCrl ?? p.combined?.pckCrl,
  };
}

/** Claims for display: bytes as hex, dates as ISO strings. */
function displayClaims(c: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const conv = (v: unknown): unknown =>
    v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v instanceof Date ? v.toISOString() : Array.isArray(v) ? v.map(conv) : v;
  for (const [k, v] of Object.entries(c)) if (v !== undefined) out[k] = conv(v);
  return out;
}

export async function run(f: VerifyTdxFlags, io: Io): Promise<number> {
  if (!f.quote) throw configError('USAGE', '--quote FILE is required');
  const json = f.json === true;
  const now = isoFlag(f.now, 'now') ?? new Date();
  const files = f.collateral ?? [];
  if (!f['ccel-log'] && f['ccel-table']) throw configError('USAGE', '--ccel-table needs --ccel-log');
  const decoded = decodeEvidence(await io.readFile(f.quote), 'tdx-quote', f.quote);
  const quote = decoded.bytes;
  const pieces: Pieces = {};
  for (const file of files) addCollateralFile(pieces, file, await io.readFile(file));
  const collateral = files.length === 0 ? null : assemble(pieces);
  let policy: TdxPolicy | undefined;
  if (f.policy) {
    const text = new TextDecoder().decode(await io.readFile(f.policy));
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw configError('POLICY_INVALID', `${f.policy} is not valid JSON`, { cause: e });
    }
    policy = tdxPolicyFromJson(doc, f.policy);
  }
  const eventLog = f['ccel-log']
    ? { log: await io.readFile(f['ccel-log']), ...(f['ccel-table'] ? { table: await io.readFile(f['ccel-table']) } : {}) }
    : undefined;
  const trustStore = await loadTrustStore(trustDirFrom(io.env, io.env.HOME ?? homedir()), fsp);

  try {
    const { claims, report } = await verifyTdx(quote, {
      now, trustStore, collateral, policy, eventLog, ecdsaP256: nodeEcdsaP256,
      checkRevocation: f['no-revocation'] !== true, requireQeIdentity: f['no-qe-identity'] !== true,
    });
    const shown = withInputRow(report, decoded, 'tdx');
    io.out(json ? reportJson(shown, claims) : formatReport(shown, displayClaims(claims as unknown as Record<string, unknown>)));
    return 0;
  } catch (e) {
    if (e instanceof GmError && e.report) {
      const shown = withInputRow(e.report, decoded, 'tdx');
      io.out(json ? reportJson(shown) : formatReport(shown));
      io.err(`gm verify tdx: ${e.code}: ${e.message}\n`);
      return e.kind === 'config' ? 2 : 1;
    }
    throw e;
  }
}
