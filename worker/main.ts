/**
 * `gm worker --upstream URL --enclave URL [--enclave URL ...] [--tee auto|configfs|sim] [--gpu-evidence-cmd CMD]
 *            [--listen ADDR] [--public-url URL] [--price-in N] [--price-out N] [--currency C]
 *            [--terms per-request|prepaid|postpaid [--credit-limit N --settlement-seconds S]]
 *            [--capacity N] [--ttft-ms N] [--tps N] [--hotkey-seed HEX]`
 * Prices are integer micro-units of the currency per million tokens; offers are signed per served model.
 * Runs the worker agent (worker/agent.ts) beside an OpenAI-compatible server. GPU evidence: generated under
 * `--tee sim`; otherwise the operator's collector command (nvtrust JSON on stdout) is required.
 */
import type { Io } from '../client/cli/io.ts';
import { configError } from '../attestation/errors.ts';
import { fromHex } from '../attestation/bytes.ts';
import { intFlag, parseFlags } from '../enclave/flags.ts';
import type { PaymentTerms } from '../protocol/offer.ts';
import { offerSigner } from './offers.ts';
import { createLogger } from '../enclave/log.ts';
import { onSignal } from '../enclave/serve.ts';
import { parseTeeChoice, selectTee } from '../enclave/tee/select.ts';
import { startWorker } from './agent.ts';
import { commandGpuSource, simGpuSource } from './gpu.ts';

const SPEC = {
  upstream: 'string', enclave: 'list', tee: 'string', 'gpu-evidence-cmd': 'string', listen: 'string', 'public-url': 'string', 'configfs-root': 'string', 'log-level': 'string',
  'price-in': 'string', 'price-out': 'string', currency: 'string', capacity: 'string', 'hotkey-seed': 'string', 'ttft-ms': 'string', tps: 'string', terms: 'string',
  'credit-limit': 'string', 'settlement-seconds': 'string',
} as const;

/**
 * The offer's payment terms from the flags: `postpaid` needs its credit limit (integer micro-units) and settlement
 * period (seconds, at least 1); the two are refused with the other terms, where they would mean nothing.
 */
export function termsFromFlags(f: { readonly terms?: string | undefined; readonly 'credit-limit'?: string | undefined; readonly 'settlement-seconds'?: string | undefined }): PaymentTerms {
  const kind = f.terms ?? 'per-request';
  if (kind === 'postpaid') {
    if (f['credit-limit'] === undefined || f['settlement-seconds'] === undefined) throw configError('USAGE', '--terms postpaid needs --credit-limit N (micro-units) and --settlement-seconds S');
    if (!/^\d{1,18}$/.test(f['credit-limit'])) throw configError('USAGE', `--credit-limit must be a non-negative integer of micro-units (got ${f['credit-limit']})`);
    const creditLimit = BigInt(f['credit-limit']);
    if (creditLimit > BigInt(Number.MAX_SAFE_INTEGER)) throw configError('USAGE', '--credit-limit is larger than an offer can carry (2^53 - 1 micro-units)');
    return { kind, creditLimit, settlementPeriodSeconds: intFlag(f['settlement-seconds'], 'settlement-seconds', 0, 1) };
  }
  if (kind !== 'per-request' && kind !== 'prepaid') throw configError('USAGE', '--terms must be per-request, prepaid or postpaid');
  if (f['credit-limit'] !== undefined || f['settlement-seconds'] !== undefined) throw configError('USAGE', '--credit-limit and --settlement-seconds apply to --terms postpaid only');
  return { kind };
}

export async function run(argv: string[], io: Io): Promise<number> {
  const f = parseFlags(argv, SPEC, io.env);
  if (!f.upstream) throw configError('USAGE', 'gm worker needs --upstream URL (the OpenAI-compatible server, e.g. http://127.0.0.1:8000)');
  if (!f.enclave?.length) throw configError('USAGE', 'gm worker needs --enclave URL (repeat for several enclaves)');
  const tee = await selectTee({ tee: parseTeeChoice(f.tee), ...(f['configfs-root'] ? { configfsRoot: f['configfs-root'] } : {}) });
  const cmd = f['gpu-evidence-cmd'];
  if (!tee.sim && !cmd) throw configError('USAGE', 'a real worker needs --gpu-evidence-cmd CMD (prints nvtrust GPU evidence JSON for the nonce in $GM_GPU_NONCE)');
  const gpu = cmd ? commandGpuSource(cmd) : simGpuSource();
  const log = createLogger({ component: 'worker', sim: tee.sim, level: (f['log-level'] ?? 'info') as 'info', sink: (l) => io.err(l) });
  const seed = f['hotkey-seed'] ? fromHex(f['hotkey-seed'], '--hotkey-seed') : tee.sim ? crypto.getRandomValues(new Uint8Array(32)) : undefined;
  if (!seed || seed.length !== 32) throw configError('USAGE', 'gm worker needs --hotkey-seed HEX (32-byte sr25519 mini-secret of the operator hotkey) to sign offers');
  const terms = termsFromFlags(f);
  const offers = offerSigner({
    currency: f.currency ?? 'USD', pricePerMInput: BigInt(intFlag(f['price-in'], 'price-in', 100_000)), pricePerMOutput: BigInt(intFlag(f['price-out'], 'price-out', 200_000)),
    terms, capacity: intFlag(f.capacity, 'capacity', 16, 1), ttftMs: intFlag(f['ttft-ms'], 'ttft-ms', 500), tokensPerSecond: intFlag(f.tps, 'tps', 50), hotkeySeed: seed,
  });
  const w = await startWorker({ upstream: f.upstream, enclaves: f.enclave, tee, gpu, log, offers, listen: f.listen ?? '127.0.0.1:0', ...(f['public-url'] ? { publicUrl: f['public-url'] } : {}) });
  io.out(`gm worker ${w.id}${tee.sim ? ' (sim)' : ''} listening on ${w.url}\n`);
  w.registered.then(
    () => io.out(`gm worker ${w.id}: registered with ${f.enclave!.length} enclave(s)\n`),
    (e: Error) => io.err(`gm worker ${w.id}: registration refused: ${e.message}\n`),
  );
  // A worker going away withdraws its offers first (signed cancels), so no enclave keeps quoting it; bounded, since
  // an unreachable enclave must not hold up the shutdown (its book drops the worker when renewals stop).
  await onSignal(async () => {
    const withdrawn = Promise.allSettled(w.models.map((m) => w.withdraw(m)));
    await Promise.race([withdrawn, new Promise((r) => setTimeout(r, 5_000).unref())]);
    await w.stop();
  });
  return 0;
}
