/**
 * How `gm enclave --ledger postgres://...` gets its ledger key at start (docs/operator.md §2.1): with `--join URL`
 * from a running replica by mutual attestation (ledger-key.ts), from `--ledger-key-file` when the operator provisioned
 * one, else a fresh random key (the first replica of a new ledger). Either way the key stays in memory, and this enclave releases it in turn to verified replicas of itself.
 */
import type { EnclaveSettings } from '../../attestation/bundle.ts';
import { configError } from '../../attestation/errors.ts';
import type { TrustStore } from '../../attestation/trust.ts';
import { type ClientPolicy, parseClientPolicy, simPolicyDoc } from '../../client/policy.ts';
import type { Logger } from '../log.ts';
import type { TeeProvider } from '../tee/provider.ts';
import { type JoinOptions, joinLedgerKey } from './join.ts';
import { LEDGER_KEY_BYTES } from './ledger-key.ts';
import type { ReplicationOptions } from './routes.ts';

export interface SharedLedgerStart {
  readonly ledgerKey: Uint8Array;
  /** Absent without a peer policy (hardware without --peer-policy): this enclave then releases the key to no one. */
  readonly replication?: ReplicationOptions;
}

export async function sharedLedgerStart(o: {
  readonly join: string | undefined;
  /** A provisioned key (`--ledger-key-file`): used as it is, and released to verified replicas like any other. */
  readonly provided?: Uint8Array | undefined;
  /** The peer policy document (`--peer-policy FILE`); under sim it defaults to the sim measurement. */
  readonly peerPolicy: unknown;
  readonly tee: TeeProvider;
  readonly trust: TrustStore | undefined;
  readonly receiptKey: Uint8Array;
  readonly settings: EnclaveSettings;
  readonly log: Logger;
  /** The network and the clock of a join (the member's evidence is checked against `now`). */
  readonly fetch: JoinOptions['fetch'];
  readonly now: () => Date;
}): Promise<SharedLedgerStart> {
  // Under sim the peers are sim replicas of the sim image; on hardware the operator names the measurements, and
  // without a peer policy this enclave neither joins nor releases (a single replica, or a provisioned key).
  const policy: ClientPolicy | undefined = o.peerPolicy !== undefined ? parseClientPolicy(o.peerPolicy, '--peer-policy') : o.tee.sim ? parseClientPolicy(simPolicyDoc(), 'sim peer policy') : undefined;
  if (o.join && !policy) throw configError('PEER_POLICY_REQUIRED', '--join needs --peer-policy FILE: the enclave measurements the member must run');
  const allowSim = o.tee.sim;
  if (o.join && o.provided) throw configError('USAGE', '--join and --ledger-key-file both name the ledger key: give one');
  const ledgerKey = o.provided ?? (o.join
    ? await joinLedgerKey({ member: o.join, fetch: o.fetch, identity: { policy: policy!, allowSim, trust: o.trust, now: o.now, tee: o.tee, receiptKey: o.receiptKey, settings: o.settings } })
    : crypto.getRandomValues(new Uint8Array(LEDGER_KEY_BYTES)));
  o.log.info('enclave.ledger_key', { source: o.provided ? 'provisioned' : o.join ? 'released by a replica' : 'new' });
  return { ledgerKey, ...(policy ? { replication: { ledgerKey, policy, allowSim, ...(o.trust ? { trust: o.trust } : {}) } } : {}) };
}
