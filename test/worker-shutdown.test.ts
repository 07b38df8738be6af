/**
 * A `gm worker` process stopped with SIGTERM withdraws its offers (signed cancels) before it exits, so the enclave's
 * book stops quoting it at once instead of when its registration lapses.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { type GmProcess, gmProcess } from './stack/processes.ts';

const running: GmProcess[] = [];
afterAll(async () => {
  for (const p of running.reverse()) await p.stop();
});

const offers = async (enclave: string) => ((await (await fetch(`${enclave}/v1/market/offers`)).json()) as { offers: { workerId: string; model: string }[] }).offers;

describe('gm worker shutdown', () => {
  it('withdraws its offers from the enclave on SIGTERM', async () => {
    const model = await gmProcess(['dev-model', '--listen', '127.0.0.1:0', '--name', 'bye-dev', '--token-ms', '0'], undefined, 'ignore');
    running.push(model);
    const enclave = await gmProcess(['enclave', '--tee', 'sim', '--listen', '127.0.0.1:0'], undefined, 'ignore');
    running.push(enclave);
    const worker = await gmProcess(['worker', '--tee', 'sim', '--upstream', model.url, '--enclave', enclave.url, '--listen', '127.0.0.1:0'], /registered with/, 'ignore');
    expect((await offers(enclave.url)).map((o) => o.model)).toEqual(['bye-dev']);
    await worker.stop('SIGTERM');
    expect(worker.child.exitCode).toBe(0);
    expect(await offers(enclave.url)).toEqual([]);
  }, 60_000);
});
