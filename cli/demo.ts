/**
 * `gm demo` (docs/design.md §7): starts the whole stack on loopback in sim mode (enclave, host shim, two workers, two
 * dev-models), then, as a client, verifies the enclave THROUGH THE RELAY with a fresh nonce, streams one encrypted
 * chat completion, and prints the verification report, the streamed answer and the receipt. Everything is shut
 * down before it returns. Options: --prompt TEXT, --model NAME, --verbose (service logs), --json, --keep (leave the
 * stack running, with its status page, until Ctrl-C).
 */
import { configError, GmError } from '../attestation/errors.ts';
import { createClient } from '../client/index.ts';
import type { DemoFlags } from './commands.ts';
import { chat, printReceipts } from './chat.ts';
import { claimsSummary } from './common.ts';
import { startDemoStack } from './demo-stack.ts';
import { formatReport, reportJson } from './format.ts';
import type { Io } from './io.ts';

export async function run(f: DemoFlags, io: Io): Promise<number> {
  const json = f.json === true;
  const tokenMs = f['token-ms'] === undefined ? undefined : Number(f['token-ms']);
  if (tokenMs !== undefined && !(Number.isSafeInteger(tokenMs) && tokenMs >= 0 && tokenMs <= 60_000)) throw configError('USAGE', `--token-ms must be an integer in [0, 60000] (got ${f['token-ms']})`);
  const say = (s: string) => io.err(`gm demo: ${s}\n`);
  const t0 = performance.now();
  const stack = await startDemoStack({ progress: say, ...(tokenMs !== undefined ? { tokenMs } : {}) });
  try {
    if (stack.host.gate.status.state !== 'open') throw new GmError('unavailable', 'HOST_GATE_CLOSED', 'the host shim did not verify the enclave');
    say(`client: verifying the enclave through the relay ${stack.relayUrl} with a fresh 32-byte nonce...`);
    const client = await createClient({ url: stack.enclaveUrl, relay: stack.relayUrl, allowSim: true });
    const claims = claimsSummary(client.claims);
    if (!json) {
      io.out('\n== Verification report (enclave, fetched through the relay) ==\n');
      io.out(formatReport(client.verification, claims));
    }
    const model = f.model ?? stack.models[0]!;
    const prompt = f.prompt ?? 'In one sentence: why route inference through an attested enclave?';
    if (!json) io.out(`\n== Streamed answer (model ${model}; encrypted end to end, relayed as ciphertext) ==\n`);
    // Charged to the stack's prepaid sim account, whose key is printed below: the same key works for `gm chat`.
    const answer = await chat(client, { model, prompt, stream: true, apiKey: stack.apiKey, onToken: json ? () => {} : (t) => io.out(t) });
    if (json) {
      io.out(`${JSON.stringify({ verification: JSON.parse(reportJson(client.verification, claims)), model, answer, receipts: client.receipts.map((r) => r.view), apiKey: stack.apiKey }, null, 2)}\n`);
    } else {
      io.out('\n\n== Receipt ==\n');
      printReceipts(io, client);
      io.out(`\nAPI key of the sim account charged (in this stack's ledger, gone when it stops): ${stack.apiKey}\n`);
    }
    if (f.verbose) for (const l of stack.logs) io.err(`${l.trimEnd()}\n`);
    if (f.keep) {
      say(`the stack keeps running: status page ${stack.relayUrl}/ ; try: GM_API_KEY=${stack.apiKey} node bin/gm.js chat --url ${stack.enclaveUrl} --relay ${stack.relayUrl} --allow-sim "hello" ; Ctrl-C stops it`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
  } finally {
    await stack.stop();
    say(`stopped every service cleanly (${Math.round(performance.now() - t0)} ms in total)`);
  }
  return 0;
}
