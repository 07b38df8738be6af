/**
 * `gm receipts prove --receipt FILE --offers FILE [--key HEX] [--json]`: checks a receipt's best-execution commitment
 * (protocol/best-execution.ts) against the public offer listing. FILE for --receipt is one receipt envelope (JSON, as
 * the client received it, with its `selection` preimages); FILE for --offers is the listing of GET /v1/market/offers
 * (a JSON array of {signed: base64, ...}, or {offers: [...]}), taken while the request was routed. Every offer's two
 * signatures are verified; the considered set is recomputed and its Merkle root compared; the winner's rank is checked
 * under the committed rule. Exit 0 proven, 1 rejected, 2 usage.
 */
import { fromBase64, fromHex } from '../attestation/bytes.ts';
import { configError, GmError, protocolError } from '../attestation/errors.ts';
import { proveBestExecution } from '../protocol/best-execution.ts';
import { type VerifiedOffer, verifyOfferSignatures } from '../protocol/offer.ts';
import { parseReceiptEnvelope, verifyReceipt } from '../protocol/receipt.ts';
import type { ReceiptsProveFlags } from './commands.ts';
import type { Io } from './io.ts';

function json(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw configError('USAGE', `${what} is not JSON`, { cause: e });
  }
}

/** The signed offers of a listing: an array of listing rows (or of base64 strings), or {offers: [...]}. */
export async function listingOffers(v: unknown): Promise<VerifiedOffer[]> {
  const rows = Array.isArray(v) ? v : Array.isArray((v as { offers?: unknown } | null)?.offers) ? (v as { offers: unknown[] }).offers : undefined;
  if (!rows) throw protocolError('OFFER_MALFORMED', 'the offers file must be the listing of GET /v1/market/offers (a JSON array)');
  return Promise.all(
    rows.map((r, i) => {
      const s = typeof r === 'string' ? r : (r as { signed?: unknown } | null)?.signed;
      if (typeof s !== 'string') throw protocolError('OFFER_MALFORMED', `listing row ${i} has no signed offer`);
      return verifyOfferSignatures(fromBase64(s, `offer ${i}`), {});
    }),
  );
}

export async function run(f: ReceiptsProveFlags, io: Io): Promise<number> {
  if (!f.receipt || !f.offers) throw configError('USAGE', 'gm receipts prove needs --receipt FILE and --offers FILE');
  const key = f.key === undefined ? undefined : fromHex(f.key, '--key');
  if (key && key.length !== 32) throw configError('USAGE', '--key must be a 32-byte Ed25519 public key in hex');
  try {
    const env = parseReceiptEnvelope(json(await io.readFile(f.receipt), '--receipt'));
    const { receipt } = await verifyReceipt(env.signed, key);
    if (!receipt.selection) throw protocolError('SELECTION_MISSING', `receipt ${receipt.seq} carries no best-execution commitment`);
    if (!env.selection) throw protocolError('SELECTION_MISSING', 'the receipt envelope lacks the selection rule and bitmap');
    const offers = await listingOffers(json(await io.readFile(f.offers), '--offers'));
    const r = proveBestExecution({ selection: receipt.selection, winner: receipt.offerDigest, feeBasisPoints: receipt.feeBasisPoints, rule: env.selection.rule, bitmap: env.selection.eligible, offers });
    const out = { proven: true, receipt: receipt.seq, offerId: receipt.offerId, rank: receipt.selection.rank, ...r };
    io.out(f.json ? `${JSON.stringify(out)}\n` : `PROVEN receipt ${receipt.seq}: offer ${receipt.offerId} at rank ${receipt.selection.rank} among ${r.eligible} eligible of ${r.considered} considered; ${r.better} ranked strictly above it under ${receipt.selection.strategy} (${r.rankChecked} checked); ${r.excludedLive} met the rule but were excluded live (capacity, health or worker verification)${key ? '' : '; receipt key not pinned (give --key)'}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof GmError) || e.kind === 'config') throw e;
    io.out(f.json ? `${JSON.stringify({ proven: false, code: e.code, message: e.message })}\n` : `REJECTED ${e.code}: ${e.message}\n`);
    return 1;
  }
}
