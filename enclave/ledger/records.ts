/**
 * The ledger's signed records beside receipts (docs/market.md "Auditing a ledger"), both deterministic CBOR
 * (RFC 8949 §4.2.1) signed with Ed25519 (RFC 8032) under their own context strings (protocol/receipt.ts
 * RECORD_CONTEXTS), so neither can pass for a receipt:
 *
 *   credit  {v:1, kind:"open"|"deposit"|"payment", account, accountKind:"prepaid"|"postpaid", currency,
 *            amount uint, creditLimit uint, keyHash bytes 32 (open only), at uint (unix ms), nonce bytes 16,
 *            signer bytes 32}
 *           One per money entry that is not a receipt's debit: an account opening binds the account's key hash,
 *           kind, currency and credit limit; a deposit or payment binds its amount. The nonce makes each record
 *           count once. Signed by the operator's credit key or the enclave's receipt key.
 *   head    {v:1, seq uint, hash bytes 32, time uint (unix ms), signer bytes 32}
 *           "seq receipts, the last one's hash is hash", signed by the enclave's receipt key and kept outside the
 *           ledger file (the log, GET /v1/ledger/head), so a ledger cut back below it shows.
 *
 * Signed forms: {credit: bytes, sig: bytes 64} and {head: bytes, sig: bytes 64}.
 */
import { concat } from '../../attestation/bytes.ts';
import { protocolError, rejected } from '../../attestation/errors.ts';
import { asMap, type CborMap, decodeDeterministic, encodeDeterministic, fBig, fBytes, fText, fUint, onlyKeys } from '../../protocol/market-cbor.ts';
import { ed25519Verify } from '../../protocol/offer.ts';
import { RECORD_CONTEXTS, type ReceiptSigner } from '../../protocol/receipt.ts';

const M = 'LEDGER_RECORD_MALFORMED';

export type CreditKind = 'open' | 'deposit' | 'payment';

export interface Credit {
  readonly kind: CreditKind;
  readonly account: string;
  readonly accountKind: 'prepaid' | 'postpaid';
  readonly currency: string;
  readonly amount: bigint;
  readonly creditLimit: bigint;
  readonly keyHash?: Uint8Array;
  readonly at: number;
  readonly nonce: Uint8Array;
  readonly signer: Uint8Array;
}

export interface ChainHead {
  readonly seq: number;
  readonly hash: Uint8Array;
  readonly time: number;
  readonly signer: Uint8Array;
}

function decode(bytes: Uint8Array, what: string): CborMap {
  try {
    return asMap(decodeDeterministic(bytes), M, what);
  } catch (e) {
    throw protocolError(M, `${what} is not deterministic CBOR`, { cause: e });
  }
}

/** Opens a signed envelope `{[field]: bytes, sig}` and checks its signature under the record kind's context. */
async function open(signed: Uint8Array, field: 'credit' | 'head'): Promise<{ body: Uint8Array; m: CborMap }> {
  const env = decode(signed, `signed ${field}`);
  onlyKeys(env, [field, 'sig'], M, `signed ${field}`);
  const body = fBytes(env, field, M);
  const sig = fBytes(env, 'sig', M, 64);
  const m = decode(body, field);
  if (m.v !== 1) throw protocolError(M, `${field} version must be 1`);
  const signer = fBytes(m, 'signer', M, 32);
  if (!(await ed25519Verify(signer, sig, concat(RECORD_CONTEXTS[field], body)))) throw rejected('LEDGER_RECORD_SIGNATURE', `a ${field} record's signature does not verify`);
  return { body, m };
}

export async function signCredit(signer: ReceiptSigner, c: Omit<Credit, 'signer' | 'nonce'>): Promise<Uint8Array> {
  const body = encodeDeterministic({
    v: 1,
    kind: c.kind,
    account: c.account,
    accountKind: c.accountKind,
    currency: c.currency,
    amount: c.amount,
    creditLimit: c.creditLimit,
    ...(c.keyHash ? { keyHash: c.keyHash } : {}),
    at: c.at,
    nonce: crypto.getRandomValues(new Uint8Array(16)),
    signer: signer.publicKey,
  });
  return encodeDeterministic({ credit: body, sig: await signer.signRecord('credit', body) });
}

/** Verifies a signed credit's signature and decodes it strictly (LEDGER_RECORD_MALFORMED, LEDGER_RECORD_SIGNATURE). */
export async function verifyCredit(signed: Uint8Array): Promise<Credit> {
  const { m } = await open(signed, 'credit');
  onlyKeys(m, ['v', 'kind', 'account', 'accountKind', 'currency', 'amount', 'creditLimit', 'keyHash', 'at', 'nonce', 'signer'], M, 'credit');
  const kind = fText(m, 'kind', M, 16);
  const accountKind = fText(m, 'accountKind', M, 16);
  if (kind !== 'open' && kind !== 'deposit' && kind !== 'payment') throw protocolError(M, 'credit kind must be open, deposit or payment');
  if (accountKind !== 'prepaid' && accountKind !== 'postpaid') throw protocolError(M, 'credit accountKind must be prepaid or postpaid');
  if ((kind === 'open') !== (m.keyHash !== undefined)) throw protocolError(M, 'an opening, and only an opening, carries the key hash');
  return {
    kind,
    account: fText(m, 'account', M, 128),
    accountKind,
    currency: fText(m, 'currency', M, 12),
    amount: fBig(m, 'amount', M),
    creditLimit: fBig(m, 'creditLimit', M),
    ...(m.keyHash !== undefined ? { keyHash: fBytes(m, 'keyHash', M, 32) } : {}),
    at: fUint(m, 'at', M),
    nonce: fBytes(m, 'nonce', M, 16),
    signer: fBytes(m, 'signer', M, 32),
  };
}

export async function signHead(signer: ReceiptSigner, h: Omit<ChainHead, 'signer'>): Promise<Uint8Array> {
  const body = encodeDeterministic({ v: 1, seq: h.seq, hash: h.hash, time: h.time, signer: signer.publicKey });
  return encodeDeterministic({ head: body, sig: await signer.signRecord('head', body) });
}

export async function verifyHead(signed: Uint8Array): Promise<ChainHead> {
  const { m } = await open(signed, 'head');
  onlyKeys(m, ['v', 'seq', 'hash', 'time', 'signer'], M, 'head');
  return { seq: fUint(m, 'seq', M), hash: fBytes(m, 'hash', M, 32), time: fUint(m, 'time', M), signer: fBytes(m, 'signer', M, 32) };
}

/** The JSON a head travels in (the log line, GET /v1/ledger/head, a file for `gm receipts verify --head`). */
export const HEAD_TYPE = 'gm.ledger-head';
