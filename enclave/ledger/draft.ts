/**
 * The receipt a settle signs (protocol/receipt.ts), from the hold, the metered usage and the offer that served the
 * request; the chain adds seq and prev when the receipt's turn in the group commit comes.
 */
import type { Receipt } from '../../protocol/receipt.ts';
import type { Hold, HoldTarget, Usage } from './ledger.ts';

export function receiptDraft(hold: Hold, usage: Usage, served: HoldTarget, charge: { workerCost: bigint; fee: bigint; total: bigint }): Omit<Receipt, 'v' | 'receiptKey' | 'seq' | 'prev'> {
  const v = served.entry.verified;
  const o = v.offer;
  return {
    requestId: usage.requestId,
    time: usage.now,
    model: o.model,
    account: hold.account,
    workerId: o.workerId,
    workerKey: o.workerKey,
    evidenceDigest: served.worker.evidenceDigest,
    offerId: o.offerId,
    offerDigest: v.digest,
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    currency: o.currency,
    pricePerMInput: o.pricePerMInput,
    pricePerMOutput: o.pricePerMOutput,
    feeBasisPoints: hold.feeBasisPoints,
    ...charge,
    terms: o.terms,
    sim: served.worker.sim || usage.enclaveSim === true,
    ...usage.commitments,
    ...(usage.status !== undefined ? { status: usage.status } : {}),
  };
}
