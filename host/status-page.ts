/**
 * The operator's status page (HTML, no scripts): the enclave's current verification report from the gate, and the
 * verified workers and live offers as the enclave lists them (GET /v1/workers, GET /v1/market/offers). The shim is
 * trusted for nothing, so the page says where each part comes from: the report is the shim's own verification; the
 * worker list is the enclave's word, unauthenticated on this page; each offer is shown as "verified" only after
 * this host checked its signed bytes itself (protocol/offer.ts verifySignedOffer: both signatures, the validity
 * window, the worker key the enclave lists for that worker, and the digest the enclave cites).
 *
 * Laid out for an operator at a glance: banners for a simulated TEE and an unreachable enclave, workers and offers
 * first, the per-check report folded below them; tables turn into labelled cards on narrow screens so nothing
 * scrolls sideways at 390 px.
 */
import { Hono } from 'hono';
import { fromBase64, fromHex, hex } from '../attestation/bytes.ts';
import { GmError } from '../attestation/errors.ts';
import { verifySignedOffer } from '../protocol/offer.ts';
import { unitsToDecimal } from '../protocol/offer-terms.ts';
import type { GateStatus, HostGate } from './gate.ts';

/** One GPU as its verified claims describe it (attestation/nvidia/claims.ts GpuClaims), reduced to what the page shows. */
export interface GpuRow {
  /** The device model (the certificate's `hwmodel`, else the architecture the evidence names). */
  readonly model?: string;
  readonly driver?: string;
  /** CC mode as the worker's attested evidence envelope declares it: on, off, devtools. */
  readonly ccMode?: string;
}
export interface WorkerRow {
  readonly id: string;
  readonly platform?: string;
  readonly measurement?: string;
  readonly gpus?: number;
  /** The worker's verified GPU claims, when the enclave lists them. */
  readonly gpuClaims?: readonly GpuRow[];
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

/** Gate errors that mean the shim could not reach the enclave at all (client/attest.ts, host/enclave-check.ts). */
const UNREACHABLE = new Set(['ATTESTATION_UNREACHABLE', 'HOST_GATE_CHECK_TIMEOUT']);

/** "3 min ago" / "in 2 h" from `now`, inside a <time> whose title is the ISO time; a value that is not a time is shown as given. */
export function relativeTime(iso: string | undefined, now: Date): string {
  if (iso === undefined) return '';
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return esc(iso);
  const d = Math.round((t - now.getTime()) / 1000);
  const a = Math.abs(d);
  const span = a < 5 ? '' : a < 60 ? `${a} s` : a < 3600 ? `${Math.floor(a / 60)} min` : a < 86_400 ? `${Math.floor(a / 3600)} h` : `${Math.floor(a / 86_400)} d`;
  const text = span === '' ? 'just now' : d < 0 ? `${span} ago` : `in ${span}`;
  const full = new Date(t).toISOString();
  return `<time datetime="${esc(full)}" title="${esc(full)}">${esc(text)}</time>`;
}

/** Identical GPUs folded into one line: "8 × GH100 A01 GSP BROM · driver 550.54.15 · CC on". */
function gpuCell(w: WorkerRow): string {
  if (w.gpuClaims === undefined) return w.gpus === undefined ? '<span class="na">not listed</span>' : `${esc(w.gpus)} <span class="na">(claims not listed)</span>`;
  if (w.gpuClaims.length === 0) return 'none';
  const groups = new Map<string, { g: GpuRow; n: number }>();
  for (const g of w.gpuClaims) {
    const k = JSON.stringify([g.model, g.driver, g.ccMode]);
    const e = groups.get(k);
    if (e) e.n++;
    else groups.set(k, { g, n: 1 });
  }
  return [...groups.values()].map(({ g, n }) => `<span class="gpu">${n} × ${esc(g.model ?? 'GPU')}${g.driver ? ` · driver ${esc(g.driver)}` : ''}${g.ccMode ? ` · CC <span class="cc-${esc(g.ccMode)}">${esc(g.ccMode)}</span>` : ''}</span>`).join('<br>');
}

/** A table whose cells carry their column name, so narrow screens show each row as a labelled card. */
function table(id: string, head: readonly string[], rows: readonly (readonly string[])[], rowClass: (i: number) => string = () => ''): string {
  const th = head.map((h) => `<th>${esc(h)}</th>`).join('');
  const body = rows.map((r, i) => `<tr${rowClass(i) ? ` class="${esc(rowClass(i))}"` : ''}>${r.map((cell, j) => `<td data-label="${esc(head[j])}">${cell}</td>`).join('')}</tr>`).join('\n');
  return `<table id="${esc(id)}"><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

/**
 * The page for one gate status and listings. `now` dates the relative times (each carries its ISO time on hover).
 * Every value from the gate or the enclave is escaped; the page has no scripts.
 */
/** One replica's row (host/replicas.ts ReplicaView) when the shim fronts several. */
export interface ReplicaRow {
  readonly url: string;
  readonly status: GateStatus;
  readonly keyIds: readonly number[];
  readonly shadowed: boolean;
}

export function renderStatus(s: GateStatus, listings: Listings, enclaveUrl: string, now: Date, replicas?: readonly ReplicaRow[]): string {
  const checks = s.report?.checks ?? [];
  const count = (st: string): number => checks.filter((c) => c.status === st).length;
  const statusCell = (st: string): string => `<span class="st st-${esc(st)}">${esc(st.toUpperCase())}</span>`;
  const report = table('report', ['status', 'check', 'what', 'against', 'detail'], checks.map((c) => [statusCell(c.status), `<code>${esc(c.id)}</code>`, esc(c.what), esc(c.against), `${c.status === 'fail' ? `${esc(c.code)}: ` : ''}${esc(c.detail)}`]), (i) => checks[i]!.status);
  const summary = Object.entries(s.summary ?? {}).map(([k, v]) => `<dt>${esc(k)}</dt><dd><code>${esc(v)}</code></dd>`).join('');
  const sim = s.summary?.sim !== undefined || /^sim-/.test(s.summary?.platform ?? '');
  const unreachable = s.error !== undefined && UNREACHABLE.has(s.error.code);
  const states = listings.workerStates;
  const stateTable = states ? `${table('worker-states', ['state', 'workers'], Object.entries(states).map(([k, v]) => [esc(k), esc(v)]))}<p><small>counts from the enclave's /metrics</small></p>` : '';
  const ws = listings.workers;
  const workers = ws === undefined
    ? stateTable || '<p class="na">worker list not available from the enclave</p>'
    : `${stateTable}${table('workers', ['worker', 'platform', 'measurement', 'GPUs', 'state', 'verified'], ws.map((w) => [`<code>${esc(w.id)}</code>`, esc(w.platform), `<code>${esc(w.measurement)}</code>`, gpuCell(w), esc(w.state), relativeTime(w.verifiedAt, now)]))}`;
  const models = listings.models === undefined ? '' : `<p>Models offered by verified workers (asked over OHTTP from the attested enclave): <span id="models">${listings.models.map((m) => `<code>${esc(m)}</code>`).join(', ') || 'none'}</span></p>`;
  const sigCell = (sig: string | undefined): string => (sig === 'verified' ? '<span class="st st-pass">verified</span>' : sig ? `<span class="st st-fail">${esc(sig)}</span>` : '<span class="st st-skip">not checked</span>');
  const os = listings.offers;
  const offers = os === undefined ? `${models}<p class="na">signed offer details not listed by the enclave</p>`
    : `${models}${table('offers', ['offer', 'worker', 'model', 'input / 1M tokens', 'output / 1M tokens', 'terms', 'signatures (checked by this host)', 'expires'], os.map((o) => [`<code>${esc(o.id)}</code>`, `<code>${esc(o.worker)}</code>`, esc(o.model), esc(o.priceIn), esc(o.priceOut), esc(o.terms), sigCell(o.signature), relativeTime(o.expires, now)]), (i) => (os[i]!.signature === 'verified' ? 'pass' : os[i]!.signature ? 'fail' : 'skip'))}
<p><small>"verified": this host checked the worker's Ed25519 and the operator's sr25519 signature over the offer's signed bytes, its validity window, that its worker key is the one the enclave lists for that worker, and the digest the enclave cites. That the key is bound in the worker's attested evidence is the enclave's word here.</small></p>`;
  const replicaTable = replicas === undefined ? '' : `<h2>Replicas (routed by OHTTP key id)</h2>
${table('replicas', ['replica', 'gate', 'key ids', 'offered to clients', 'last checked'], replicas.map((r) => [
    `<code>${esc(r.url)}</code>`,
    `<span class="state-${esc(r.status.state)}">${esc(r.status.state.toUpperCase())}</span>${r.status.error ? ` ${esc(r.status.error.code)}` : ''}`,
    esc(r.keyIds.join(', ')),
    r.status.state !== 'open' ? 'no' : r.shadowed ? 'no: a key id collides with an earlier replica\'s' : 'yes',
    r.status.checkedAt ? relativeTime(r.status.checkedAt, now) : '',
  ]), (i) => (replicas[i]!.status.state === 'open' ? 'pass' : 'fail'))}`;
  const banners = [
    sim ? '<div id="sim-banner" class="banner sim" role="alert">SIMULATED TEE: this enclave\'s evidence is not backed by hardware. Nothing it serves is confidential.</div>' : '',
    unreachable ? `<div id="unreachable" class="banner down" role="alert">enclave unreachable: ${esc(s.error!.message)}</div>` : '',
  ].join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta http-equiv="refresh" content="10"><title>gm host: ${esc(unreachable ? 'enclave unreachable' : s.state)}</title>
<style>
*{box-sizing:border-box}body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#111}main{padding:1em 1.5em;max-width:100%}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em}
.banner{display:block;width:100%;padding:.7em 1.5em;font-weight:bold;color:#fff;overflow-wrap:anywhere}.banner.sim{background:#b45309}.banner.down{background:#b3261e}
table{border-collapse:collapse;width:100%}#worker-states{width:auto}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:break-word}th{background:#f3f3f3}#report td{overflow-wrap:anywhere}time{white-space:nowrap}
code{overflow-wrap:anywhere;word-break:break-all}
tr.fail{background:#fde8e8}tr.skip{color:#555}
.st{display:inline-block;overflow-wrap:anywhere;padding:0 .45em;border-radius:3px;font-weight:bold;font-size:.9em;color:#fff}.st-pass{background:#1e7b34}.st-fail{background:#b3261e}.st-skip{background:#6b6b6b}
.state-open{color:#1e7b34}.state-closed{color:#b3261e}.state-pending{color:#a15c00}.na{color:#666}.cc-on{color:#1e7b34;font-weight:bold}.cc-off,.cc-devtools{color:#b3261e;font-weight:bold}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.5em 0}dt{font-weight:bold}dd{margin:0;min-width:0;overflow-wrap:anywhere}
details{margin-top:1.2em}summary{cursor:pointer;font-weight:bold;font-size:1.1em}time{text-decoration:underline dotted}
@media (max-width:760px){main{padding:.6em}table,tbody,tr,td{display:block;width:100%}thead{display:none}#worker-states,tr{border:1px solid #ccc;margin:.5em 0}td{border:0;border-top:1px solid #eee}td::before{content:attr(data-label);display:block;font-size:.8em;color:#555}dl{grid-template-columns:1fr}}
</style></head>
<body>${banners}<main><h1>gm host shim</h1>
<p>Enclave <code>${esc(enclaveUrl)}</code>: gate <strong id="gate" class="state-${esc(s.state)}">${esc(s.state.toUpperCase())}</strong>${s.checkedAt ? `, last checked ${relativeTime(s.checkedAt, now)}` : ''}${s.error ? ` <span id="gate-error">${esc(s.error.code)}: ${esc(s.error.message)}</span>` : ''}</p>
<dl id="summary">${summary}</dl>
${replicaTable}
<h2>Verified workers (as listed by the enclave)</h2>
${workers}
<h2>Live offers (as listed by the enclave; signatures checked by this host)</h2>
${offers}
<details id="checks"><summary>Enclave verification by this host, fresh nonce: <span id="check-counts">${count('pass')} pass, ${count('fail')} fail, ${count('skip')} skip</span></summary>
${report}
</details>
<p><small>This page is informational. Clients verify the enclave themselves; the host is trusted for nothing.</small></p>
</main></body></html>
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
    // Offers price in settlement units per 1M tokens (micro-units; rao for TAO); the page shows currency units
    // (100000 → 0.1 USD, 100000000 → 0.1 TAO).
    const dec = (x: bigint): string => unitsToDecimal(x, o.currency);
    const quoted = (q: unknown, p: bigint): string => (typeof q === 'string' && /^[0-9]{1,30}$/.test(q) && q !== p.toString() ? ` (quoted ${dec(BigInt(q))} with the routing fee)` : '');
    return {
      id: o.offerId,
      worker: o.workerId,
      model: o.model,
      priceIn: `${dec(o.pricePerMInput)} ${o.currency}${quoted(item.quotedPerMInput, o.pricePerMInput)}`,
      priceOut: `${dec(o.pricePerMOutput)} ${o.currency}${quoted(item.quotedPerMOutput, o.pricePerMOutput)}`,
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

/** `now` dates the page's relative times; it is read once per page, here, and nowhere deeper. */
export function statusRoutes(gate: HostGate, listings: () => Promise<Listings>, enclaveUrl: string, now: () => Date = () => new Date(), replicas?: () => readonly ReplicaRow[]): Hono {
  const app = new Hono();
  app.get('/', async (c) => c.html(renderStatus(gate.status, await listings(), enclaveUrl, now(), replicas?.())));
  app.get('/status.json', async (c) => c.json({ gate: gate.status, ...(replicas ? { replicas: replicas() } : {}), ...(await listings()) }));
  return app;
}
