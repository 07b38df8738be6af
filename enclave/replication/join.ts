/**
 * The joiner's side of ledger key release (enclave/replication/ledger-key.ts): `gm enclave --join URL` asks a running
 * replica for the ledger key before this enclave serves anything. A member that refuses answers with its code (a
 * different measurement: REPLICA_MEASUREMENT_MISMATCH), passed on in the message of REPLICATION_REFUSED.
 */
import { unavailable, rejected } from '../../attestation/errors.ts';
import { errorCode } from '../../client/attest.ts';
import { joinRequest, MAX_REPLICATION_BODY_BYTES, type ReplicaIdentity } from './ledger-key.ts';
import { REPLICATION_JOIN_PATH } from './routes.ts';

export interface JoinOptions {
  /** A member's enclave base URL (its own listener, not its relay). */
  readonly member: string;
  readonly identity: ReplicaIdentity;
  readonly fetch: (input: string, init?: RequestInit) => Promise<Response>;
  /** The whole exchange must finish within this (default 30 s). */
  readonly timeoutMs?: number;
}

/** The 32-byte ledger key, released by `member` after both sides verified each other; throws a coded GmError. */
export async function joinLedgerKey(o: JoinOptions): Promise<Uint8Array> {
  const req = await joinRequest(o.identity);
  let res: Response;
  try {
    res = await o.fetch(`${o.member.replace(/\/+$/, '')}${REPLICATION_JOIN_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: req.body as Uint8Array<ArrayBuffer>, signal: AbortSignal.timeout(o.timeoutMs ?? 30_000) });
  } catch (e) {
    throw unavailable('REPLICATION_UNREACHABLE', `the member ${o.member} could not be reached`, { cause: e });
  }
  if (!res.ok) {
    const code = await errorCode(res);
    throw rejected('REPLICATION_REFUSED', `the member refused the join: HTTP ${res.status}${code ? ` (${code})` : ''}`);
  }
  const answer = new Uint8Array(await res.arrayBuffer());
  if (answer.length > MAX_REPLICATION_BODY_BYTES) throw rejected('REPLICATION_REFUSED', 'the member answer is too large');
  return req.accept(answer);
}
