/**
 * Browser entry for the headless-Chromium test: the SDK as an application would use it, with the openai package
 * unchanged on top. Reads `enclave`, `relay` and `model` from the query string, verifies the enclave through the
 * relay under a policy that requires a post-quantum KEM (X-Wing), shows the verification report and the key
 * configuration chosen, then streams a chat completion into the page.
 */
import OpenAI from 'openai';
import { createClient } from '../../client/index.ts';

const q = new URLSearchParams(location.search);
const el = (id: string): HTMLElement => document.getElementById(id)!;
const status = (s: string): void => void (el('status').textContent = s);

async function main(): Promise<void> {
  status('verifying');
  // The sim provider's measurement (client/policy.ts simPolicyDoc), as an application would write its policy.
  const policy = { 'sev-snp': { measurements: ['5a'.repeat(48)], allowDebug: false }, requirePostQuantum: true };
  const client = await createClient({ url: q.get('enclave')!, relay: q.get('relay')!, allowSim: true, policy });
  const report = client.verification;
  el('verdict').textContent = `${report.subject}: ${report.verified ? 'VERIFIED' : 'REJECTED'}`;
  const tbody = el('report');
  for (const c of report.checks) {
    const tr = document.createElement('tr');
    tr.className = c.status;
    for (const t of [c.status.toUpperCase(), c.id, c.what]) {
      const td = document.createElement('td');
      td.textContent = t;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  el('measurement').textContent = client.claims.cpu.measurement;
  el('kem').textContent = report.checks.find((c) => c.id === 'client.key-config')?.detail ?? '';
  status('streaming');
  const openai = new OpenAI({ baseURL: client.baseURL, apiKey: 'gm-browser', fetch: client.fetch, dangerouslyAllowBrowser: true, maxRetries: 0 });
  const stream = await openai.chat.completions.create({ model: q.get('model')!, messages: [{ role: 'user', content: 'hello from a browser' }], stream: true, max_tokens: 10 });
  let n = 0;
  for await (const chunk of stream) {
    const t = chunk.choices[0]?.delta?.content;
    if (t) {
      el('answer').textContent += t;
      el('chunks').textContent = String(++n);
    }
  }
  el('receipts').textContent = String(client.receipts.length);
  status('done');
}

main().catch((e: { code?: string; message?: string }) => status(`error ${e.code ?? ''} ${e.message ?? String(e)}`));
