/**
 * A relay's set of enclave replicas (docs/design.md §10, docs/protocol.md §3.1, docs/operator-host.md "Several replicas"): one gate per
 * replica (host/gate.ts), each verifying its replica against the operator's policy on its own schedule, and the
 * key id routing table built from what those checks verified.
 *
 * Every encapsulated request names its key configuration in its first byte (RFC 9458 §4.3 header `key_id`; the
 * chunked header is the same, draft-ietf-ohai-chunked-ohttp-08 §4). Each replica's attested application/ohttp-keys
 * list says which ids it serves; ids are random single bytes (enclave/keys.ts), so two replicas can draw the same
 * one. The table is deterministic:
 *   1. replicas in the operator's `--enclave` order; each current (attested) id goes to the first verified replica
 *      that serves it;
 *   2. then each replica's previous ids (the configuration it attested before its last rotation, which it still
 *      accepts for one period) go to it where no current id claims them;
 *   3. a replica one of whose current ids an earlier replica already claimed is shadowed: it keeps the ids it owns
 *      but is offered to no client (neither in `?all=1` nor as the answer to a plain attestation request) until a
 *      rotation gives it free ids, so no client is ever handed a configuration the relay would route elsewhere.
 *      The relay also checks every bundle it hands out against the table (`owns`), re-checking the replicas when a
 *      replica rotated since its last check, so a fresh rotation onto a taken id is caught before any client sees it.
 * A replica whose check fails leaves the table at once; the relay stays open while at least one replica passes.
 */
import { decodeKeyConfigs } from '../protocol/ohttp.ts';
import { EnclaveGate, type GateCheckResult, type GateStatus, type HostGate } from './gate.ts';

export interface ReplicaSpec {
  /** The replica's base URL, as the operator gave it. */
  readonly url: string;
  /** Verifies the replica (fresh nonce, operator policy); the result must carry the attested key configurations. */
  readonly check: () => Promise<GateCheckResult>;
}

export interface ReplicaSetOptions {
  readonly replicas: readonly ReplicaSpec[];
  readonly intervalMs: number;
  readonly retryMs?: number;
  readonly now?: () => Date;
  /**
   * The fewest milliseconds between two checks forced by a request for an unknown key id (a replica rotated since
   * its last check): a client cannot make the relay re-verify faster than this. Default 1000.
   */
  readonly refreshMinMs?: number;
  readonly onChange?: (url: string, s: GateStatus) => void;
  /** Told when a replica is shadowed by a key id collision (the ids only; nothing about any request). */
  readonly onCollision?: (url: string, keyIds: readonly number[], owner: string) => void;
}

export interface ReplicaView {
  readonly url: string;
  readonly status: GateStatus;
  /** The ids of its current attested configurations (empty until its first check passed). */
  readonly keyIds: readonly number[];
  /** Verified but offered to no client: another replica owns one of its current ids. */
  readonly shadowed: boolean;
}

interface Replica {
  readonly url: string;
  readonly gate: EnclaveGate;
  current: readonly number[];
  previous: readonly number[];
}

export class ReplicaSet implements HostGate {
  readonly #replicas: readonly Replica[];
  readonly #opts: ReplicaSetOptions;
  #table = new Map<number, Replica>();
  #shadowed = new Set<Replica>();
  #next = 0;
  #lastRefresh = Number.NEGATIVE_INFINITY;
  #refreshing: Promise<void> | undefined;

  constructor(o: ReplicaSetOptions) {
    if (o.replicas.length === 0) throw new Error('a replica set needs at least one replica');
    this.#opts = o;
    this.#replicas = o.replicas.map((spec) => {
      const r: Replica = {
        url: spec.url.replace(/\/$/, ''),
        current: [],
        previous: [],
        gate: new EnclaveGate({
          intervalMs: o.intervalMs,
          ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
          ...(o.now ? { now: o.now } : {}),
          check: async () => {
            const res = await spec.check();
            if (!res.keyConfigs) throw new Error('the replica check returned no attested key configurations');
            const ids = decodeKeyConfigs(res.keyConfigs).map((c) => c.keyId);
            if (ids.join() !== r.current.join()) {
              r.previous = r.current;
              r.current = ids;
              // A rotation keeps the gate open (no state change to be told of): the table follows the ids here.
              if (r.gate.status.state === 'open') this.#rebuild();
            }
            return res;
          },
          onChange: (s) => {
            this.#rebuild();
            o.onChange?.(r.url, s);
          },
        }),
      };
      return r;
    });
  }

  /** Open while at least one replica is; pending while none has been checked; else closed with the first error. */
  get status(): GateStatus {
    const all = this.#replicas.map((r) => r.gate.status);
    const open = all.filter((s) => s.state === 'open');
    const first = open[0] ?? all.find((s) => s.state === 'closed') ?? all[0]!;
    const state = open.length > 0 ? 'open' : all.every((s) => s.state === 'pending') ? 'pending' : 'closed';
    const summary = first.summary ? { ...first.summary, replicas: `${open.length} of ${all.length} verified` } : undefined;
    return { ...first, state, summary };
  }

  get replicas(): readonly ReplicaView[] {
    return this.#replicas.map((r) => ({ url: r.url, status: r.gate.status, keyIds: r.current, shadowed: this.#shadowed.has(r) }));
  }

  /** The replica serving `keyId`, if a verified one does. */
  routeFor(keyId: number): string | undefined {
    return this.#table.get(keyId)?.url;
  }

  /**
   * As routeFor, but an id no verified replica serves first re-checks every replica (at most once per refreshMinMs,
   * shared by concurrent callers): a replica that rotated its keys since its last check is found at once.
   */
  async resolve(keyId: number): Promise<string | undefined> {
    const hit = this.routeFor(keyId);
    if (hit !== undefined) return hit;
    await this.refresh();
    return this.routeFor(keyId);
  }

  /** Re-checks every replica now, unless a refresh ran within refreshMinMs. */
  refresh(): Promise<void> {
    const now = this.#nowMs();
    if (this.#refreshing) return this.#refreshing;
    if (now - this.#lastRefresh < (this.#opts.refreshMinMs ?? 1000)) return Promise.resolve();
    this.#lastRefresh = now;
    this.#refreshing = Promise.all(this.#replicas.map((r) => r.gate.check())).then(() => this.#rebuild()).finally(() => (this.#refreshing = undefined));
    return this.#refreshing;
  }

  /** The replicas clients may be given: verified and not shadowed, in the operator's order. */
  offered(): readonly string[] {
    return this.#replicas.filter((r) => r.gate.status.state === 'open' && !this.#shadowed.has(r)).map((r) => r.url);
  }

  /** True when `url` is offered to clients and every one of `keyIds` routes to it. */
  owns(url: string, keyIds: readonly number[]): boolean {
    const r = this.#replicas.find((x) => x.url === url);
    return r !== undefined && r.gate.status.state === 'open' && !this.#shadowed.has(r) && keyIds.length > 0 && keyIds.every((id) => this.#table.get(id) === r);
  }

  /** The next offered replica, round robin (a plain `GET /v1/attestation` and the key configuration endpoint). */
  pick(): string | undefined {
    const o = this.offered();
    if (o.length === 0) return undefined;
    return o[this.#next++ % o.length];
  }

  check(): Promise<GateStatus> {
    return Promise.all(this.#replicas.map((r) => r.gate.check())).then(() => {
      this.#rebuild();
      return this.status;
    });
  }

  async start(): Promise<GateStatus> {
    await Promise.all(this.#replicas.map((r) => r.gate.start()));
    this.#rebuild();
    return this.status;
  }

  stop(): void {
    for (const r of this.#replicas) r.gate.stop();
  }

  retryAfterSeconds(): number {
    return Math.min(...this.#replicas.map((r) => r.gate.retryAfterSeconds()));
  }

  #nowMs(): number {
    return (this.#opts.now?.() ?? new Date()).getTime();
  }

  /** Rebuilds the table from the verified replicas (rules 1–3 of the module header). */
  #rebuild(): void {
    const live = this.#replicas.filter((r) => r.gate.status.state === 'open');
    const table = new Map<number, Replica>();
    const shadowed = new Set<Replica>();
    for (const r of live) {
      const taken = r.current.filter((id) => table.has(id));
      for (const id of r.current) if (!table.has(id)) table.set(id, r);
      if (taken.length > 0) {
        shadowed.add(r);
        if (!this.#shadowed.has(r)) this.#opts.onCollision?.(r.url, taken, table.get(taken[0]!)!.url);
      }
    }
    for (const r of live) for (const id of r.previous) if (!table.has(id)) table.set(id, r);
    this.#table = table;
    this.#shadowed = shadowed;
  }
}
