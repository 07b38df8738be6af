/**
 * The member's side of ledger key release on the enclave's own listener (enclave/replication/ledger-key.ts):
 * `POST /v1/replication/join`. A joining replica calls a member's enclave address directly; the host shim does not
 * relay this path. Verification costs CPU, so two joins run at once at most; the body is read before a slot is taken.
 */
import type { Context } from 'hono';
import { configError } from '../../attestation/errors.ts';
import type { EnclaveSettings } from '../../attestation/bundle.ts';
import type { TrustStore } from '../../attestation/trust.ts';
import type { ClientPolicy } from '../../client/policy.ts';
import { readLimited, StreamLimiter } from '../http/limits.ts';
import type { Logger } from '../log.ts';
import type { TeeProvider } from '../tee/provider.ts';
import { LEDGER_KEY_BYTES, MAX_REPLICATION_BODY_BYTES, releaseLedgerKey, type ReplicaIdentity, type SelfClaims, selfClaims } from './ledger-key.ts';

export const REPLICATION_JOIN_PATH = '/v1/replication/join';

export interface ReplicationOptions {
  /** The ledger key this enclave holds (32 bytes, memory only) and releases to verified replicas of itself. */
  readonly ledgerKey: Uint8Array;
  /** The peer policy: what a joiner's evidence must pass, besides equalling this enclave's own claims. */
  readonly policy: ClientPolicy;
  readonly allowSim: boolean;
  readonly trust?: TrustStore;
  readonly now?: () => Date;
}

export function replicationHandler(o: ReplicationOptions, e: { readonly tee: TeeProvider; readonly receiptKey: Uint8Array; readonly settings: EnclaveSettings; readonly keyConfigs: () => Uint8Array; readonly log: Logger }): (c: Context) => Promise<Response> {
  if (o.ledgerKey.length !== LEDGER_KEY_BYTES) throw configError('LEDGER_KEY_INVALID', `the ledger key must be ${LEDGER_KEY_BYTES} bytes`);
  const identity: ReplicaIdentity = { policy: o.policy, allowSim: o.allowSim, trust: o.trust, now: o.now ?? (() => new Date()), tee: e.tee, receiptKey: e.receiptKey, settings: e.settings };
  let self: Promise<SelfClaims> | undefined;
  const slots = new StreamLimiter(2);
  return async (c) => {
    const raw = await readLimited(c.req.raw.body, MAX_REPLICATION_BODY_BYTES);
    const release = slots.acquire();
    try {
      self ??= selfClaims(identity, e.keyConfigs()).catch((err: unknown) => {
        self = undefined;
        throw err;
      });
      const out = await releaseLedgerKey(raw, { identity, self: await self, ledgerKey: o.ledgerKey, keyConfigs: e.keyConfigs() });
      e.log.info('replication.key_released', {});
      return new Response(out as Uint8Array<ArrayBuffer>, { headers: { 'content-type': 'application/json', 'cache-control': 'no-store' } });
    } finally {
      release();
    }
  };
}
