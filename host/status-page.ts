/**
 * The operator's status page (HTML, no scripts): the enclave's current verification report from the gate, and the
 * verified workers and live offers as the enclave lists them. The shim is trusted for nothing, so the page says
 * where each part comes from: the report is the shim's own verification; the worker and offer lists are the
 * enclave's word, unauthenticated on this page.
 */
import { Hono } from 'hono';
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
  const workers = listings.workers === undefined
    ? states ? `<table id="worker-states"><thead><tr><th>state</th><th>workers</th></tr></thead><tbody>${Object.entries(states).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('')}</tbody></table><p><small>counts from the enclave's /metrics</small></p>`
    : '<p class="na">worker list not available from the enclave</p>'
    : `<table id="workers"><thead><tr><th>worker</th><th>platform</th><th>measurement</th><th>GPUs</th><th>state</th><th>verified at</th></tr></thead><tbody>${listings.workers.map((w) => `<tr><td><code>${esc(w.id)}</code></td><td>${esc(w.platform)}</td><td><code>${esc(w.measurement)}</code></td><td>${esc(w.gpus)}</td><td>${esc(w.state)}</td><td>${esc(w.verifiedAt)}</td></tr>`).join('')}</tbody></table>`;
  const models = listings.models === undefined ? '' : `<p>Models offered by verified workers (asked over OHTTP from the attested enclave): <span id="models">${listings.models.map((m) => `<code>${esc(m)}</code>`).join(', ') || 'none'}</span></p>`;
  const offers = listings.offers === undefined ? `${models}<p class="na">signed offer details not listed by the enclave</p>`
    : `<table id="offers"><thead><tr><th>offer</th><th>worker</th><th>model</th><th>input / Mtok</th><th>output / Mtok</th><th>terms</th><th>expires</th></tr></thead><tbody>${listings.offers.map((o) => `<tr><td><code>${esc(o.id)}</code></td><td><code>${esc(o.worker)}</code></td><td>${esc(o.model)}</td><td>${esc(o.priceIn)}</td><td>${esc(o.priceOut)}</td><td>${esc(o.terms)}</td><td>${esc(o.expires)}</td></tr>`).join('')}</tbody></table>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>gm host: ${esc(s.state)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
tr.fail{background:#fdd}tr.skip{color:#777}.state-open{color:#060}.state-closed{color:#a00}.state-pending{color:#a60}dt{font-weight:bold}</style></head>
<body><h1>gm host shim</h1>
<p>Enclave <code>${esc(enclaveUrl)}</code>: gate <strong id="gate" class="state-${esc(s.state)}">${esc(s.state.toUpperCase())}</strong>${s.checkedAt ? `, last checked ${esc(s.checkedAt)}` : ''}${s.error ? ` <span id="gate-error">${esc(s.error.code)}: ${esc(s.error.message)}</span>` : ''}</p>
<h2>Enclave verification (by this host, fresh nonce)</h2>
<dl id="summary">${summary}</dl>
<table id="report"><thead><tr><th>status</th><th>check</th><th>what</th><th>against</th><th>detail</th></tr></thead><tbody>
${rows}
</tbody></table>
<h2>Verified workers (as listed by the enclave)</h2>
${workers}
<h2>Live offers (as listed by the enclave)</h2>
${offers}
<p><small>This page is informational. Clients verify the enclave themselves; the host is trusted for nothing.</small></p>
</body></html>
`;
}

export function statusRoutes(gate: EnclaveGate, listings: () => Promise<Listings>, enclaveUrl: string): Hono {
  const app = new Hono();
  app.get('/', async (c) => c.html(renderStatus(gate, await listings(), enclaveUrl)));
  app.get('/status.json', async (c) => c.json({ gate: gate.status, ...(await listings()) }));
  return app;
}
