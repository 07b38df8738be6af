/**
 * The operator's status page (HTML, no scripts): the enclave's current verification report from the gate, and the
 * verified workers and live offers as the enclave lists them (GET /v1/workers, GET /v1/market/offers). The shim is
 * trusted for nothing, so the page says where each part comes from: the report is the shim's own verification; the
 * worker list is the enclave's word, unauthenticated on this page; each offer is shown as "verified" only after
 * this host checked its signed bytes itself (protocol/offer.ts verifySignedOffer: both signatures, the validity
 * window, the worker key the enclave lists for that worker, and the digest the enclave cites).
 */
import { Hono } from 'hono';
import { fromBase64, fromHex, hex } from '../attestation/bytes.ts';
import { GmError } from '../attestation/errors.ts';
import { microsToDecimal, verifySignedOffer } from '../protocol/offer.ts';
import type { EnclaveGate } from './gate.ts';

export interface WorkerRow {
  readonly id: string;
  readonly platform?: string;
  readonly measurement?: string;
  readonly gpus?: number;
  readonly state?: string;
  readonly verifiedAt?: string;
}
export interface OfferRow {
  readonly id: string;
  readonly worker?: string;
  readonly model: string;
  readonly priceIn?: string;
  readonly priceOut?: string;
  readonly terms?: string;
  readonly expires?: string;
  /** This host's check of the signed offer: `verified`, `REJECTED <code>`, or absent when not checked. */
  readonly signature?: string;
  readonly digest?: string;
}
export interface Listings {
  readonly workers: readonly WorkerRow[] | undefined;
  readonly offers: readonly OfferRow[] | undefined;
  /** Worker counts by state from the enclave's /metrics (gm_workers gauge), when no worker list is served. */
  readonly workerStates?: Readonly<Record<string, number>> | undefined;
  /** Models the verified workers offer, asked over OHTTP from the attested enclave (GET /v1/models). */
  readonly models?: readonly string[] | undefined;
}

const esc = (s: unknown): string => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function renderStatus(gate: EnclaveGate, listings: Listings, enclaveUrl: string): string {
  const s = gate.status;
  const rows = (s.report?.checks ?? []).map((c) => `<tr class="${esc(c.status)}"><td>${esc(c.status.toUpperCase())}</td><td><code>${esc(c.id)}</code></td><td>${esc(c.what)}</td><td>${esc(c.against)}</td><td>${c.status === 'fail' ? `${esc(c.code)}: ` : ''}${esc(c.detail)}</td></tr>`).join('\n');
  const summary = Object.entries(s.summary ?? {}).map(([k, v]) => `<dt>${esc(k)}</dt><dd><code>${esc(v)}</code></dd>`).join('');
  const states = listings.workerStates;
  const stateTable = states ? `<table id="worker-states"><thead><tr><th>state</th><th>workers</th></tr></thead><tbody>${Object.entries(states).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('')}</tbody></table><p><small>counts from the enclave's /metrics</small></p>` : '';
  const workers = listings.workers === undefined
    ? stateTable || '<p class="na">worker list not available from the enclave</p>'
    : `${stateTable}<table id="workers"><thead><tr><th>worker</th><th>platform</th><th>measurement</th><th>GPUs</th><th>state</th><th>verified at</th></tr></thead><tbody>${listings.workers.map((w) => `<tr><td><code>${esc(w.id)}</code></td><td>${esc(w.platform)}</td><td><code>${esc(w.measurement)}</code></td><td>${esc(w.gpus)}</td><td>${esc(w.state)}</td><td>${esc(w.verifiedAt)}</td></tr>`).join('')}</tbody></table>`;
  const models = listings.models === undefined ? '' : `<p>Models offered by verified workers (asked over OHTTP from the attested enclave): <span id="models">${listings.models.map((m) => `<code>${esc(m)}</code>`).join(', ') || 'none'}</span></p>`;
  const sigCell = (sig: string | undefined): string => (sig === 'verified' ? '<td class="ok">verified</td>' : sig ? `<td class="fail">${esc(sig)}</td>` : '<td class="na">not checked</td>');
  const offers = listings.offers === undefined ? `${models}<p class="na">signed offer details not listed by the enclave</p>`
    : `${models}<table id="offers"><thead><tr><th>offer</th><th>worker</th><th>model</th><th>input / 1M tokens</th><th>output / 1M tokens</th><th>terms</th><th>signatures (checked by this host)</th><th>expires</th></tr></thead><tbody>${listings.offers.map((o) => `<tr class="${o.signature === 'verified' ? 'pass' : o.signature ? 'fail' : 'skip'}"><td><code>${esc(o.id)}</code></td><td><code>${esc(o.worker)}</code></td><td>${esc(o.model)}</td><td>${esc(o.priceIn)}</td><td>${esc(o.priceOut)}</td><td>${esc(o.terms)}</td>${sigCell(o.signature)}<td>${esc(o.expires)}</td></tr>`).join('')}</tbody></table>
<p><small>"verified": this host checked the worker's Ed25519 and the operator's sr25519 signature over the offer's signed bytes, its validity window, that its worker key is the one the enclave lists for that worker, and the digest the enclave cites. That the key is bound in the worker's attested evidence is the enclave's word here.</small></p>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>gm host: ${esc(s.state)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
tr.fail{background:#fdd}tr.skip{color:#777}td.ok{color:#060}td.fail{color:#a00}.state-open{color:#060}.state-closed{color:#a00}.state-pending{color:#a60}dt{font-weight:bold}</style></head>
<body><h1>gm host shim</h1>
<p>Enclave <code>${esc(enclaveUrl)}</code>: gate <strong id="gate" class="state-${esc(s.state)}">${esc(s.state.toUpperCase())}</strong>${s.checkedAt ? `, last checked ${esc(s.checkedAt)}` : ''}${s.error ? ` <span id="gate-error">${esc(s.error.code)}: ${esc(s.error.message)}</span>` : ''}</p>
<h2>Enclave verification (by this host, fresh nonce)</h2>
<dl id="summary">${summary}</dl>
<table id="report"><thead><tr><th>status</th><th>check</th><th>what</th><th>against</th><th>detail</th></tr></thead><tbody>
${rows}
</tbody></table>
<h2>Verified workers (as listed by the enclave)</h2>
${workers}
<h2>Live offers (as listed by the enclave; signatures checked by this host)</h2>
${offers}
<p><small>This page is informational. Clients verify the enclave themselves; the host is trusted for nothing.</small></p>
</body></html>
`;
}

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

/**
 * The enclave's live offers (GET /v1/market/offers), each checked here before it is shown as verified. Returns
 * undefined when the enclave lists none in the signed format (not served, unreachable, not JSON).
 */
export async function checkedOffers(enclave: string, f: Fetch = (i, init) => fetch(i, init), now: () => number = Date.now): Promise<OfferRow[] | undefined> {
  const base = enclave.replace(/\/+$/, '');
  const json = async (path: string): Promise<Record<string, unknown> | undefined> => {
    try {
      const r = await f(`${base}${path}`, { signal: AbortSignal.timeout(3000), headers: { accept: 'application/json' } });
      if (!r.ok) return undefined;
      const j = (await r.json()) as unknown;
      return typeof j === 'object' && j !== null && !Array.isArray(j) ? (j as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  };
  const [listed, ws] = await Promise.all([json('/v1/market/offers'), json('/v1/workers')]);
  if (!listed || !Array.isArray(listed.offers)) return undefined;
  const keys = new Map<string, string>();
  for (const w of Array.isArray(ws?.workers) ? ws.workers : []) {
    const x = w as Record<string, unknown>;
    if (typeof x.id === 'string' && typeof x.workerKey === 'string') keys.set(x.id, x.workerKey);
  }
  return Promise.all(listed.offers.slice(0, 10_000).map((item) => checkOffer(item as Record<string, unknown>, keys, now())));
}

async function checkOffer(item: Record<string, unknown>, keys: ReadonlyMap<string, string>, now: number): Promise<OfferRow> {
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const reported: OfferRow = { id: str(item.offerId) ?? '?', worker: str(item.workerId), model: str(item.model) ?? '?' };
  const reject = (code: string): OfferRow => ({ ...reported, signature: `REJECTED ${code}` });
  if (typeof item.signed !== 'string') return reject('OFFER_NOT_SIGNED');
  try {
    const workerId = str(item.workerId);
    const listedKey = workerId === undefined ? undefined : keys.get(workerId);
    if (listedKey === undefined || !/^[0-9a-f]{64}$/.test(listedKey)) return reject('OFFER_UNKNOWN_WORKER');
    const v = await verifySignedOffer(fromBase64(item.signed, 'signed offer'), { workerPublicKey: fromHex(listedKey), now });
    const o = v.offer;
    // The enclave's view beside the bytes must describe the same offer; the row shows only the signed fields.
    if (o.workerId !== workerId || o.offerId !== item.offerId || item.digest !== hex(v.digest)) return reject('OFFER_VIEW_MISMATCH');
    // Offers price in micro-units per 1M tokens; the page shows currency units (100000 → 0.1 USD).
    const quoted = (q: unknown, p: bigint): string => (typeof q === 'string' && /^[0-9]{1,30}$/.test(q) && q !== p.toString() ? ` (quoted ${microsToDecimal(BigInt(q))} with the routing fee)` : '');
    return {
      id: o.offerId,
      worker: o.workerId,
      model: o.model,
      priceIn: `${microsToDecimal(o.pricePerMInput)} ${o.currency}${quoted(item.quotedPerMInput, o.pricePerMInput)}`,
      priceOut: `${microsToDecimal(o.pricePerMOutput)} ${o.currency}${quoted(item.quotedPerMOutput, o.pricePerMOutput)}`,
      terms: o.terms.kind,
      expires: new Date(o.validUntil * 1000).toISOString(),
      signature: 'verified',
      digest: hex(v.digest),
    };
  } catch (e) {
    return reject(e instanceof GmError ? e.code : 'OFFER_MALFORMED');
  }
}

/** The listings with the offers replaced by this host's checked rows whenever the enclave lists signed offers. */
export function withCheckedOffers(listings: () => Promise<Listings>, enclave: string, f?: Fetch): () => Promise<Listings> {
  return async () => {
    const [l, checked] = await Promise.all([listings(), checkedOffers(enclave, f)]);
    return checked ? { ...l, offers: checked } : l;
  };
}

export function statusRoutes(gate: EnclaveGate, listings: () => Promise<Listings>, enclaveUrl: string): Hono {
  const app = new Hono();
  app.get('/', async (c) => c.html(renderStatus(gate, await listings(), enclaveUrl)));
  app.get('/status.json', async (c) => c.json({ gate: gate.status, ...(await listings()) }));
  return app;
}
