/**
 * The market as the enclave's `Router` (the routing interface of enclave/router.ts; docs/design.md §6): mirrors the
 * verified-worker registry into the order book, selects per request by the constraints in the decrypted body,
 * holds the account's funds before dispatch, keeps live stats through leases, and settles each served request
 * into the ledger, returning the signed receipt as the final SSE event (`gm.receipt`) or the `gm-receipt` header.
 *
 * Wiring (enclave app):
 *   const m = marketRouter({ market, ledger, enclaveSim: tee.sim, anonymous });
 *   createEnclave({ ..., router: m.router, onWorkerChange: m.onWorkerChange, market: m.surface })
 * The gateway should pass the bearer token of the decrypted request as `apiKey` on the RouteRequest.
 *
 * Holds and failover: one hold per request covering the largest bound among the candidates the account can
 * afford (candidates it cannot are dropped; if it cannot afford the best one the request fails with the 402
 * code), so a failover never dispatches uncovered; the receipt charges the offer actually served. Leases (in-flight)
 * start when a candidate is dispatched (the first at selection, the next on each failure) and end on the outcome
 * callbacks; a request with no callback and no stream activity for `abandonAfterMs` is released.
 * Usage (enclave/market/metering.ts): the worker's `usage` checked against the enclave's own count of what it
 * delivered and the hold's bounds, the smaller charged; a worker that sends none is charged the estimates, and
 * the log says so (`market.usage_missing`, `market.usage_clamped`). A client that cancels after the first token is
 * charged what it was sent (receipt status `cancelled`); a worker that fails after the first token is paid for what
 * the client was sent before the failure (receipt status `failed`, counted against the worker); a worker fault is
 * charged nothing and demotes the worker. Each request settles at most once: the first outcome wins, and the ledger
 * refuses a second settle of the same hold (HOLD_UNKNOWN).
 */
import { toBase64Url } from '../../attestation/bytes.ts';
import { GmError, rejected, unavailable } from '../../attestation/errors.ts';
import { hash as nodeHash } from 'node:crypto';
import { encodeRule, type SelectionCommitment } from '../../protocol/best-execution.ts';
import { identityCommitments, RECEIPT_SSE_EVENT, RECEIPT_TRAILER, receiptEnvelope, receiptHeaderValue } from '../../protocol/receipt.ts';
import type { Account, Hold, Ledger } from '../ledger/ledger.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Candidate as RouterCandidate, Delivered, RouteRequest, Router, Selection as RouterSelection, Usage } from '../router.ts';
import type { OfferRefusal, VerifiedWorker, WorkerRegistry } from '../workers/registry.ts';
import type { CancelOutcome } from './book.ts';
import { modelCards } from './models.ts';
import { poolCards, withPools } from './pool-cards.ts';
import { type Market, publicOffersView } from './index.ts';
import { inflated, meter } from './metering.ts';
import { tokenizerThread } from './tokenizer-thread.ts';
import { encodingFor } from './tokenizers.ts';
import { HEAD_TYPE } from '../ledger/records.ts';
import { type Candidate, selectionRule } from './select.ts';
import type { Lease } from './stats.ts';

export interface MarketRouterOptions {
  readonly market: Market;
  readonly ledger: Ledger;
  /** True when the enclave runs on simulated evidence: every receipt then says sim. */
  readonly enclaveSim: boolean;
  /** The account charged when a request carries no API key (dev and demo only); otherwise ACCOUNT_MISSING. */
  readonly anonymous?: Account;
  readonly now?: () => number;
  readonly abandonAfterMs?: number;
  /**
   * How often the ledger's chain head is signed, logged (`ledger.head`) and served (default 60 s; 0: never). A head
   * counts receipts, so whoever reads it learns how many requests were settled in each period, nothing more.
   */
  readonly headEveryMs?: number;
  readonly log?: Pick<Logger, 'info' | 'warn'>;
  /** Over-reported usage beyond this fraction of the enclave's bound demotes the offer (default 0.1). */
  readonly inflationTolerance?: number;
  /** How long an offer stays demoted after an over-report (default 10 minutes). */
  readonly inflationCoolOffMs?: number;
  /** The enclave's metrics registry: selections by outcome code, receipts, offers in the book (no payload labels). */
  readonly metrics?: Metrics;
}

export interface MarketRouter {
  readonly router: (registry: WorkerRegistry) => Router;
  readonly onWorkerChange: (event: 'verified' | 'removed', w: VerifiedWorker) => Promise<readonly OfferRefusal[]>;
  readonly surface: MarketSurface;
}

/**
 * What the enclave's public HTTP surface needs from the market: the listing (`GET /v1/market/offers`) and signed
 * cancels (`POST /v1/workers/{id}/offers/cancel`); passed to createEnclave as `market`.
 */
export interface MarketSurface {
  offers(now: number): Record<string, unknown>[];
  cancel(workerId: string, signed: Uint8Array): Promise<CancelOutcome>;
  /** The latest periodic signed chain head, `{type: "gm.ledger-head", v: 1, head: base64url}` (none before the first). */
  head?(): Record<string, unknown> | undefined;
}


/** The gateway adds the decrypted request's bearer token here. */
export type RouteRequestWithKey = RouteRequest & { readonly apiKey?: string };

interface Detail {
  readonly cand: Candidate;
  lease?: Lease;
}

export function marketRouter(o: MarketRouterOptions): MarketRouter {
  const now = o.now ?? Date.now;
  const { market, ledger } = o;
  const abandonAfter = o.abandonAfterMs ?? 15 * 60_000;
  const selections = o.metrics?.counter('gm_market_selections_total', 'Market selections by outcome (ok or the error code)', { labels: ['outcome'] });
  const receipts = o.metrics?.counter('gm_market_receipts_total', 'Receipts settled into the ledger');
  const inflations = o.metrics?.counter('gm_market_usage_inflated_total', 'Answers whose worker-reported usage exceeded the enclave count beyond the tolerance (the offer is demoted)');
  o.metrics?.gauge('gm_market_offers', 'Live offers in the order book', { collect: () => [[{}, market.book.size]] });

  const onWorkerChange = async (event: 'verified' | 'removed', w: VerifiedWorker): Promise<readonly OfferRefusal[]> => {
    if (event === 'removed') {
      market.book.removeWorker(w.id);
      return [];
    }
    market.book.upsertWorker({ workerId: w.id, workerKey: w.signingKey, evidenceDigest: w.evidenceDigest, verifiedUntil: w.expiresAt, sim: w.sim, identities: w.identities, gpus: w.gpus });
    // Load the tokenizer of each served model's family now, not on its first settlement.
    for (const model of w.models) tokenizerThread().warm(model);
    const refused: OfferRefusal[] = [];
    for (const [index, signed] of w.offers.entries()) {
      try {
        await market.book.addSignedOffer(signed, now(), w.id);
      } catch (e) {
        // Re-verification re-posts the same offers: an equal sequence is not news.
        if (e instanceof GmError && e.code === 'OFFER_SUPERSEDED') continue;
        const code = e instanceof GmError ? e.code : 'INTERNAL';
        refused.push({ index, code });
        o.log?.warn('market.offer_refused', { worker: w.id, code });
      }
    }
    return refused;
  };

  let latestHead: Record<string, unknown> | undefined;
  let headSeq = -1;
  const publishHead = async (): Promise<void> => {
    if (ledger.head.seq === headSeq && latestHead) return;
    try {
      const h = await ledger.signedHead(now());
      headSeq = h.seq;
      const head = toBase64Url(h.signed);
      latestHead = { type: HEAD_TYPE, v: 1, head };
      o.log?.info('ledger.head', { seq: h.seq, head });
    } catch (e) {
      o.log?.warn('ledger.head_failed', { code: e instanceof GmError ? e.code : 'INTERNAL' });
    }
  };
  const headEvery = o.headEveryMs ?? 60_000;
  if (headEvery > 0) {
    void publishHead();
    setInterval(() => void publishHead(), headEvery).unref?.();
  }

  const surface: MarketSurface = {
    head: () => latestHead,
    offers: (t) => publicOffersView(market.book, t),
    async cancel(workerId, signed) {
      try {
        const c = await market.book.cancel(signed, workerId);
        o.log?.info('market.offer_cancelled', { worker: workerId, sequence: c.sequence, removed: c.removed });
        return c;
      } catch (e) {
        o.log?.warn('market.cancel_refused', { worker: workerId, code: e instanceof GmError ? e.code : 'INTERNAL' });
        throw e;
      }
    },
  };

  const router = (registry: WorkerRegistry): Router => ({
    models: (t) => market.book.models(t),
    // The operator's pools are listed beside the models (marked `gm_pool`), so GET /v1/models/{pool} answers too.
    modelCards: (t) => (market.config.pools ? withPools(modelCards(market.book, t), poolCards(market.book, market.config.pools, t)) : modelCards(market.book, t)),
    async select(req: RouteRequestWithKey): Promise<RouterSelection> {
      try {
        const s = await selectFor(registry, req);
        selections?.inc({ outcome: 'ok' });
        return s;
      } catch (e) {
        selections?.inc({ outcome: e instanceof GmError ? e.code : 'INTERNAL' });
        throw e;
      }
    },
  });

  async function selectFor(registry: WorkerRegistry, req: RouteRequestWithKey): Promise<RouterSelection> {
    const t = now();
    const account = req.apiKey ? await ledger.accountForKey(req.apiKey) : o.anonymous;
    if (!account) throw rejected('ACCOUNT_MISSING', 'request carries no API key');
    const sel = market.route(req.body, { now: t, requestId: req.requestId, account, commit: true });
    // What the receipt commits to about this selection; the rule's bytes and the bitmap go to the client beside it.
    const rule = encodeRule(selectionRule(sel.constraints));
    const proof = sel.proof!;
    const usable = sel.candidates.filter((c) => registry.usable(c.offer.workerId) !== undefined);
    if (usable.length === 0) throw unavailable('NO_ELIGIBLE_OFFER', `no eligible offer: the ${sel.candidates.length} selected worker(s) are not verified right now`);
    const available = await ledger.available(account.id);
    const affordable = usable.filter((c) => c.maxCost <= available);
    // None affordable: the ledger names the reason (funds, credit limit) for the best candidate, and throws.
    if (affordable.length === 0) {
      await ledger.release(await ledger.authorize(account, usable[0]!, sel.feeBasisPoints));
      throw rejected('PAYMENT_INSUFFICIENT_FUNDS', 'the account cannot cover any eligible offer');
    }
    const bound = affordable.reduce((m, c) => (c.maxCost > m ? c.maxCost : m), 0n);
    const hold: Hold = await ledger.authorize(account, { ...affordable[0]!, maxCost: bound }, sel.feeBasisPoints);
    const cands: RouterCandidate[] = affordable.map((cand) => ({ worker: registry.usable(cand.offer.workerId)!, detail: { cand } satisfies Detail }));
    let settled = false;
    const start = (i: number, at = now()): void => {
      const d = cands[i]?.detail as Detail | undefined;
      if (d && !d.lease) d.lease = market.book.acquire(d.cand.entry, at);
    };
    /** The dispatcher may skip candidates without a callback (its attestation gate): earlier slots are freed and
     * this one is taken, timed from selection (conservative for TTFT). */
    const reached = (c: RouterCandidate): Detail => {
      const i = cands.indexOf(c);
      for (let j = 0; j < i; j++) (cands[j]!.detail as Detail).lease?.cancelled();
      start(i, t);
      return c.detail as Detail;
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    let active = false;
    const finish = (): void => {
      settled = true;
      clearTimeout(timer);
      void ledger.release(hold).catch((e: unknown) => o.log?.warn('ledger.release_failed', { code: e instanceof GmError ? e.code : 'INTERNAL' }));
      for (const c of cands) (c.detail as Detail).lease?.cancelled();
    };
    start(0);
    // A request that ends with no callback (client gone mid-dispatch) must not keep its hold and slot forever; a
    // stream that moved during the last period is not abandoned, however long it runs.
    const reap = (): void => {
      if (settled) return;
      if (!active) return finish();
      active = false;
      timer = setTimeout(reap, abandonAfter);
      timer.unref?.();
    };
    timer = setTimeout(reap, abandonAfter);
    timer.unref?.();
    const bounds = { maxInputTokens: sel.constraints.maxInputTokens, maxOutputTokens: sel.constraints.maxOutputTokens, expectedInputTokens: sel.constraints.expectedInputTokens };
    /** Signs the receipt for what the enclave metered, commits it, and releases the hold (whatever happens). */
    const settle = async (d: Detail, usage: Usage | undefined, delivered: Delivered, status: 'completed' | 'cancelled' | 'failed') => {
      settled = true;
      clearTimeout(timer);
      try {
        const tokens = await countDelivered(d.cand.offer.model, delivered, bounds.maxOutputTokens);
        const m = meter(usage, delivered, bounds, tokens);
        if (!usage) o.log?.warn('market.usage_missing', { requestId: req.requestId });
        if (m.clamped) o.log?.warn('market.usage_clamped', { requestId: req.requestId });
        if (inflated(usage, delivered, bounds, o.inflationTolerance, tokens)) {
          // The charge is clamped already; the worker's offer for this model leaves selection for a while.
          const st = d.cand.entry.stats;
          st.inflations++;
          st.inflatedUntil = now() + (o.inflationCoolOffMs ?? 10 * 60_000);
          inflations?.inc();
          o.log?.warn('market.usage_inflated', { worker: d.cand.offer.workerId, inflations: st.inflations });
        }
        const selection: SelectionCommitment = {
          root: proof.root, considered: proof.considered, eligible: sha256(proof.bitmap), count: proof.count, strategy: proof.strategy, constraints: sha256(rule), rank: sel.candidates.indexOf(d.cand),
        };
        const commitments = { ...identityCommitments(d.cand.offer), selection, ...(delivered.stream ? { stream: delivered.stream } : {}) };
        const receipt = await ledger.settle(hold, { requestId: req.requestId, inputTokens: m.inputTokens, outputTokens: m.outputTokens, now: now(), enclaveSim: o.enclaveSim, commitments, ...(status !== 'completed' ? { status } : {}) }, d.cand);
        receipts?.inc();
        return receipt;
      } finally {
        // After a committed settle the hold is gone and this is a no-op; after a failed one it frees the reservation.
        await ledger.release(hold).catch((e: unknown) => o.log?.warn('ledger.release_failed', { code: e instanceof GmError ? e.code : 'INTERNAL' }));
      }
    };
    return {
      candidates: cands,
      allowFallbacks: sel.allowFallbacks,
      caps: { maxTokens: sel.constraints.maxTokensPerChoice, n: sel.constraints.choices },
      onFirstToken(c) {
        active = true;
        reached(c).lease?.firstToken(now());
      },
      onProgress() {
        active = true;
      },
      onFailure(c, code) {
        const d = reached(c);
        const first = d.lease?.firstTokenSent ?? false;
        d.lease?.failed(now());
        const i = cands.indexOf(c);
        if (!first && sel.allowFallbacks && i + 1 < cands.length) start(i + 1);
        else finish();
        o.log?.info('market.dispatch_failed', { requestId: req.requestId, code });
      },
      onWorkerFault(c, code) {
        reached(c).lease?.faulted(now());
        finish();
        o.log?.warn('market.worker_fault', { requestId: req.requestId, code });
      },
      async onCancel(c, delivered, usage) {
        // The client's choice, not the worker's failure: its slot is freed without counting against it.
        const d = reached(c);
        d.lease?.cancelled();
        if (!delivered || settled) return finish();
        await settle(d, usage, delivered, 'cancelled');
        finish();
      },
      async onFailedMidStream(c, code, delivered, usage) {
        // The client keeps what it was sent, so it pays for it once; the failure counts against the worker.
        const d = reached(c);
        d.lease?.failed(now());
        o.log?.info('market.dispatch_failed', { requestId: req.requestId, code });
        if (settled) {
          finish();
          return undefined;
        }
        try {
          const receipt = await settle(d, usage, delivered, 'failed');
          const env = receiptEnvelope(receipt, d.cand.entry.verified.signed, { rule, eligible: proof.bitmap });
          return { sseEvent: { event: RECEIPT_SSE_EVENT, data: JSON.stringify(env) } };
        } finally {
          finish();
        }
      },
      async onSuccess(c, usage: Usage | undefined, delivered: Delivered) {
        const d = reached(c);
        d.lease?.succeeded(usage?.completionTokens ?? 0, now());
        const receipt = await settle(d, usage, delivered, 'completed');
        const env = receiptEnvelope(receipt, d.cand.entry.verified.signed, { rule, eligible: proof.bitmap });
        const json = JSON.stringify(env);
        return { sseEvent: { event: RECEIPT_SSE_EVENT, data: json }, header: [RECEIPT_TRAILER, receiptHeaderValue(env, json)] as const };
      },
    };
  }

  /**
   * The tokenizer's count of the delivered text for the served model's family (enclave/market/tokenizers.ts, on
   * the tokenizer thread), or undefined when it has none or could not count: the byte bound then applies. Counting
   * stops at the hold's output bound, past which more tokens cannot change the charge.
   */
  async function countDelivered(model: string, delivered: Delivered, maxOutputTokens: number): Promise<number | undefined> {
    if (!delivered.texts) return undefined;
    const n = await tokenizerThread().count(model, delivered.texts, maxOutputTokens);
    if (n === undefined && encodingFor(model)) o.log?.warn('market.tokenizer_unavailable', {});
    return n;
  }

  return { router, onWorkerChange, surface };
}

const sha256 = (b: Uint8Array): Uint8Array => new Uint8Array(nodeHash('sha256', b, 'buffer'));

