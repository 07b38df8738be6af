/**
 * Child process for test/market-crash.test.ts (the whole path): the sim stack in this process with its ledger at
 * argv[2], and a burst of concurrent chat completions charged to the account whose API key is argv[3] (inside the
 * encrypted request), printing the seq of every receipt the client received, until the parent kills it.
 */
import { fetchTransport, sendPlain } from '../enclave/ohttp/client.ts';
import { bhttpRequest } from '../enclave/ohttp/messages.ts';
import { parseReceiptHeader, verifyReceipt } from '../protocol/receipt.ts';
import { connect } from './stack/client.ts';
import { startStack } from './stack/harness.ts';

const [path, apiKey] = process.argv.slice(2) as [string, string];
const s = await startStack({ ledgerPath: path });
const client = await connect(s.enclaveUrl);
const send = fetchTransport(`${s.enclaveUrl}/v1/ohttp`);
const te = new TextEncoder();
let i = 0;
await Promise.all(Array.from({ length: 8 }, async () => {
  for (;;) {
    const n = i++;
    const body = te.encode(JSON.stringify({ model: s.workers[n % 2]!.modelName, messages: [{ role: 'user', content: `crash burst ${n}` }], max_tokens: 1 + (n % 7) }));
    const r = await sendPlain(send, client.config, bhttpRequest('POST', '/v1/chat/completions', [['content-type', 'application/json'], ['authorization', `Bearer ${apiKey}`]], body));
    await new Response(r.body).arrayBuffer();
    if (r.status !== 200) throw new Error(`status ${r.status}`);
    const v = await verifyReceipt(parseReceiptHeader(r.headers.get('gm-receipt')!).signed, s.enclave.keys.receipt.publicKey);
    process.stdout.write(`${v.receipt.seq}\n`);
  }
}));
