/**
 * The market (docs/design.md §6): signed offers → order book → per-request selection → hold → dispatch → settle with a
 * signed, chained receipt. This file is the entry point the enclave wires in; the pieces live beside it.
 *
 * API summary (money is bigint micro-units, `now` is unix ms).
 *
 * The enclave wires it in three lines through the Router adapter (enclave/market/router.ts), which does everything
 * below (registry mirror, selection, hold, leases, settle, receipt as SSE event / `gm-receipt` header):
 *
 *   const ledger = SqliteLedger.open(path, { signer: keys.receipt });    // the attested receipt key
 *   const m = marketRouter({ market: createMarket({ feeBasisPoints }), ledger, enclaveSim, anonymous?, log?, metrics? });
 *   createEnclave({ ..., router: m.router, onWorkerChange: m.onWorkerChange, market: m.surface });
 *
 * The pieces, for other callers:
 *
 *   const market = createMarket({ feeBasisPoints, pools, defaultMaxOutputTokens });
 *   // worker registry, after CPU+GPU evidence verified (and again on every re-verification):
 *   market.book.upsertWorker({ workerId, workerKey, evidenceDigest, verifiedUntil, sim, hotkey? });
 *   await market.book.addSignedOffer(signedOfferBytes, now);      // OFFER_* codes on refusal
 *   await market.book.cancelSigned(signedCancelBytes, workerId);
 *   market.book.removeWorker(workerId);                            // dropped worker: its offers leave
 *   market.book.models(now)                                        // for /v1/models
 *
 *   // per request, inside the gateway, on the decrypted JSON body:
 *   const sel = market.route(body, { now, requestId, account? }); // NO_ELIGIBLE_OFFER | ROUTE_CONSTRAINT_INVALID
 *   let i = 0, cand = sel.candidates[0];
 *   const hold = await ledger.authorize(account, cand, sel.feeBasisPoints);  // PAYMENT_* (402) before dispatch
 *   const lease = market.book.acquire(cand.entry, now);            // in-flight + live stats
 *   //   forward with max_tokens <= sel.constraints.maxOutputTokens (the hold's bound)
 *   //   on first token: lease.firstToken(now)
 *   //   on failure before the first token: lease.failed(now); await ledger.release(hold);
 *   //     const next = nextCandidate(market.book, sel, i, { firstTokenSent: lease.firstTokenSent, now }) → retry or fail
 *   //   on success: lease.succeeded(outputTokens, now);
 *   const receipt = await ledger.settle(hold, { requestId, inputTokens, outputTokens, now, enclaveSim });
 *   //   send receiptEnvelope(receipt, cand.entry.verified.signed) as SSE event `gm.receipt` / trailer `gm-receipt`
 *
 *   SqliteLedger.open(path, { signer: generateEnclaveReceiptKey() })      // enclave/ledger/signer.ts; signer.publicKey
 *                                                                   // (raw 32-byte Ed25519) goes into REPORT_DATA
 *   ledger.accountForKey(apiKey)                                    // ACCOUNT_MISSING / ACCOUNT_UNKNOWN (401)
 *   marketHttpStatus(err.code)                                      // the status to map a market error to
 *   offersView(market.book, now)                                    // JSON of the live book, live stats included
 *   publicOffersView(market.book, now)                              // GET /v1/market/offers: signed bytes + view
 */
import { type ConstraintOptions, parseRouteConstraints, type RouteConstraints } from './constraints.ts';
import { type BookEntry, OrderBook } from './book.ts';
import { select, type Selection } from './select.ts';
import type { StatsConfig } from './stats.ts';
import { hex, toBase64 } from '../../attestation/bytes.ts';
import { offerJson } from '../../protocol/offer.ts';

export { OrderBook, type BookEntry, type WorkerInfo, quotedPrice } from './book.ts';
export { parseRouteConstraints, decimalToMicros, type RouteConstraints, type SortBy, type PoolMode } from './constraints.ts';
export { select, nextCandidate, type Candidate, type Selection, EXCLUSION_REASONS } from './select.ts';
export { Lease, LiveStats } from './stats.ts';

export interface MarketConfig extends ConstraintOptions {
  /** The operator's routing fee, basis points of the worker cost, added to every quote and shown in receipts. */
  readonly feeBasisPoints?: number;
  /** Failover depth: ranked candidates kept per request (default 8). */
  readonly candidates?: number;
  readonly stats?: StatsConfig;
}

export interface Market {
  readonly book: OrderBook;
  readonly config: MarketConfig;
  /** Parses the constraints from the decrypted body and selects; the account's currency restricts offers. */
  /** With `commit` (what the router asks for) the selection carries its best-execution commitment. */
  route(body: unknown, ctx: { now: number; requestId: string; account?: { currency: string }; commit?: boolean }): Selection;
  /** Selection from already parsed constraints (benchmarks, tests). */
  selectParsed(c: RouteConstraints, ctx: { now: number; requestId: string; commit?: boolean }): Selection;
}

export function createMarket(config: MarketConfig = {}): Market {
  const book = new OrderBook({ ...(config.feeBasisPoints !== undefined ? { feeBasisPoints: config.feeBasisPoints } : {}), ...(config.stats ? { stats: config.stats } : {}) });
  const limit = config.candidates ?? 8;
  return {
    book,
    config,
    route(body, ctx) {
      const parsed = parseRouteConstraints(body, config);
      const c = ctx.account && parsed.paymentCurrency === undefined ? { ...parsed, paymentCurrency: ctx.account.currency } : parsed;
      return select(book, c, ctx.now, { requestId: ctx.requestId, limit, commit: ctx.commit === true });
    },
    selectParsed(c, ctx) {
      return select(book, c, ctx.now, { requestId: ctx.requestId, limit, commit: ctx.commit === true });
    },
  };
}

/** The fields both views share: the signed offer as JSON, its digest and its quoted prices (fee included). */
function offerBase(book: OrderBook, e: BookEntry): Record<string, unknown> {
  return { ...offerJson(e.offer), digest: hex(e.verified.digest), quotedPerMInput: String(e.quotedIn), quotedPerMOutput: String(e.quotedOut), feeBasisPoints: book.feeBasisPoints };
}

const byModelThenId = (a: Record<string, unknown>, b: Record<string, unknown>) => (String(a.model) + String(a.offerId) < String(b.model) + String(b.offerId) ? -1 : 1);

/**
 * The live order book as JSON for the operator (not served publicly): each offer's signed fields, its quoted prices,
 * whether its worker is verified now, and the live measurements. Money as decimal strings of micro-units.
 */
export function offersView(book: OrderBook, now: number): Record<string, unknown>[] {
  return [...book.offers(now)].map((e) => {
    const w = e.slot.info;
    return {
      ...offerBase(book, e),
      workerVerified: w !== undefined && w.verifiedUntil > now,
      sim: w?.sim ?? false,
      live: { ttftMs: Math.round(e.stats.ttftMs), tokensPerSecond: Math.round(e.stats.tokensPerSecond * 10) / 10, errorRate: Math.round(e.stats.errorRate * 1000) / 1000, inFlight: e.stats.inFlight, samples: e.stats.samples },
    };
  }).sort(byModelThenId);
}

/**
 * The public listing of the live book (`GET /v1/market/offers`, docs/market.md "Listing"): per offer the signed
 * envelope exactly as the worker posted it (base64 of the CBOR `{offer, workerSig, hotkeySig}`), so anyone can
 * verify both signatures with protocol/offer.ts, beside its JSON view, digest, quoted prices and its worker's
 * evidence digest. Only offers of currently verified workers are listed. Nothing derived from requests (no live
 * stats, in-flight counts or error rates: they would show traffic to whoever polls) and nothing about accounts.
 */
export function publicOffersView(book: OrderBook, now: number): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const e of book.offers(now)) {
    const w = e.slot.info;
    if (!w || w.verifiedUntil <= now) continue;
    out.push({ ...offerBase(book, e), evidenceDigest: hex(w.evidenceDigest), sim: w.sim, signed: toBase64(e.verified.signed) });
  }
  return out.sort(byModelThenId);
}

/** HTTP status for the market's error codes (the gateway maps any other code itself). */
export function marketHttpStatus(code: string): number | undefined {
  if (code.startsWith('PAYMENT_')) return 402;
  if (code === 'ACCOUNT_MISSING' || code === 'ACCOUNT_UNKNOWN') return 401;
  if (code === 'ROUTE_CONSTRAINT_INVALID') return 400;
  if (code === 'NO_ELIGIBLE_OFFER' || code === 'WORKER_CREDIT_LIMIT') return 503;
  // Offer and cancel refusals: a forged or foreign signature is forbidden, an unregistered worker unknown.
  if (code === 'OFFER_UNKNOWN_WORKER') return 404;
  if (code === 'OFFER_CANCEL_LIMIT') return 429;
  if (code.startsWith('OFFER_SIGNATURE_') || code === 'OFFER_WORKER_KEY_MISMATCH' || code === 'OFFER_HOTKEY_MISMATCH') return 403;
  if (code.startsWith('OFFER_')) return 400;
  return undefined;
}
