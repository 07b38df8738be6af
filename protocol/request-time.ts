/**
 * The request time (docs/protocol.md §13): gm's clients put the moment they sealed a request into the encrypted inner
 * request, as the binary HTTP field `gm-sent-at: <Unix seconds>`. Only the gateway reads it (no intermediary can see
 * or change it). A gateway accepts a request carrying it only within a short window around its own clock, so it need
 * remember that request's encapsulated key only until the time leaves the window (replay.ts RecentReplayCache),
 * instead of for a key configuration's whole life. Standard OHTTP clients, which do not send it, are still served
 * under the key-lifetime rule unless the gateway requires the field.
 */
import { protocolError } from '../attestation/errors.ts';
import type { Field } from './bhttp.ts';

export const REQUEST_TIME_FIELD = 'gm-sent-at';
/** Sent by the gateway in the sealed answer to a request outside the window: its own clock, in Unix seconds. */
export const GATEWAY_TIME_FIELD = 'gm-time';

/** How far a request time may lie behind or ahead of the gateway's clock. */
export interface RequestTimeWindow {
  readonly pastMs: number;
  readonly futureMs: number;
}
/**
 * Behind: the whole-request timeout (30 s) plus relay and queueing time, doubled; ahead: ordinary clock skew. A client
 * further off learns the gateway's time from the sealed REQUEST_TIME_SKEW answer and retries once.
 */
export const DEFAULT_REQUEST_TIME_WINDOW: RequestTimeWindow = { pastMs: 60_000, futureMs: 30_000 };

/** The field's value for a clock reading in milliseconds. */
export function formatRequestTime(ms: number): string {
  return String(Math.floor(ms / 1000));
}

/**
 * The request time in milliseconds, or undefined when the field is absent. Strict: exactly one field, a decimal
 * integer without sign or leading zeros, at most 12 digits (REQUEST_TIME_INVALID otherwise).
 */
export function parseRequestTime(fields: readonly Field[]): number | undefined {
  let value: string | undefined;
  let n = 0;
  for (const [k, v] of fields) {
    if (k.length !== REQUEST_TIME_FIELD.length || k.toLowerCase() !== REQUEST_TIME_FIELD) continue;
    value = v;
    n++;
  }
  if (value === undefined) return undefined;
  if (n > 1 || !/^(0|[1-9][0-9]{0,11})$/.test(value)) throw protocolError('REQUEST_TIME_INVALID', `${REQUEST_TIME_FIELD} must appear once, as Unix seconds`);
  return Number(value) * 1000;
}

/** True when a request time (ms) is inside the window around `now`. */
export function withinWindow(t: number, now: number, w: RequestTimeWindow): boolean {
  return t >= now - w.pastMs && t <= now + w.futureMs;
}
