/**
 * `gm worker --upstream URL --enclave URL [--enclave URL ...] [--tee auto|configfs|sim] [--gpu-evidence-cmd CMD]
 *            [--listen ADDR] [--public-url URL] [--price-in N] [--price-out N] [--currency C]
 *            [--terms per-request|prepaid|postpaid [--credit-limit N --settlement-seconds S]] [--min-charge N]
 *            [--discounts FROM:BPS,...] [--gpu-count N --gpu-model NAME]
 *            [--capacity N] [--ttft-ms N] [--tps N] [--hotkey-seed-file FILE] [--max-streams N]
 *            [--wallet NAME --hotkey NAME [--wallet-path DIR]] [--weights-digest HEX] [--quantization Q] [--engine NAME/VERSION] [--context-length N] [--parameters LIST]
 *            [--processes N] [--key-rotation-seconds N]`
 * Prices are integer micro-units of the currency per million tokens; offers are signed per served model.
 * The operator hotkey's seed comes from `--hotkey-seed-file FILE` (owner-only permissions), a Bittensor wallet's hotkey
 * file (`--wallet NAME --hotkey NAME`, see `walletSeed`) or `GM_HOTKEY_SEED`,
 * never from the command line (cli/commands.ts refuses `--hotkey-seed`; see `hotkeySeedFrom`).
 * Runs the worker agent (worker/agent.ts) beside an OpenAI-compatible server. GPU evidence: generated under
 * `--tee sim`; otherwise the operator's collector command (nvtrust JSON on stdout) is required.
 * `--processes N` (default: the number of cores) serves from N processes, one attested identity registered once by
 * the primary, which listens and hands each connection to a process (worker/cluster.ts).
 * The enclaves' evidence is verified against the pinned vendor roots of the trust directory (GM_TRUST_DIR, else
 * ~/.config/gm/trust, as every gm command): a real worker whose directory holds none does not start
 * (TRUST_ANCHOR_MISSING), and one holding a certificate that fails its pin neither (TRUST_PIN_MISMATCH).
 * The network and the clock the agent uses are the process's, handed to it here.
 */
import { checkPriceTerms, type DiscountTier } from '../protocol/offer-terms.ts';
import * as fsp from 'node:fs/promises';
import { configError } from '../attestation/errors.ts';
import { sha256 } from '@noble/hashes/sha2.js';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fromHex, hex } from '../attestation/bytes.ts';
import { type ModelIdentity, normalizeIdentity } from '../protocol/model-identity.ts';
import { intFlag } from '../enclave/flags.ts';
import { hotkeyFromSeed, type PaymentTerms } from '../protocol/offer.ts';
import { type GpuStatement, offerSigner, statingGpus } from './offers.ts';
import { createLogger } from '../enclave/log.ts';
import { onSignal, type ServiceIo } from '../enclave/serve.ts';
import { parseTeeChoice, selectTee } from '../enclave/tee/select.ts';
import { startWorker, startWorkerPrimary } from './agent.ts';
import { isWorkerProcess } from './cluster.ts';
import { serveWorkerProcess, startPrimary } from './processes.ts';
import { availableParallelism } from 'node:os';
import type { FetchLike } from '../client/attest.ts';
import { parseClientPolicy } from '../client/policy.ts';
import { trustDirFrom, trustFromDir } from '../attestation/trust.ts';
import { commandGpuSource, simGpuSource } from './gpu.ts';

/** The flags (declared, with their GM_<FLAG> environment names, in cli/commands.ts). */
export interface WorkerFlags {
  readonly upstream?: string;
  readonly enclave?: readonly string[];
  readonly 'enclave-policy'?: string;
  readonly tee?: string;
  readonly 'gpu-evidence-cmd'?: string;
  readonly listen?: string;
  readonly 'public-url'?: string;
  readonly 'configfs-root'?: string;
  readonly 'log-level'?: string;
  readonly 'price-in'?: string;
  readonly 'price-out'?: string;
  readonly currency?: string;
  readonly capacity?: string;
  /** From GM_HOTKEY_SEED only. */
  readonly 'hotkey-seed'?: string;
  readonly 'hotkey-seed-file'?: string;
  readonly wallet?: string;
  readonly hotkey?: string;
  readonly 'wallet-path'?: string;
  readonly 'ttft-ms'?: string;
  readonly tps?: string;
  readonly 'max-streams'?: string;
  readonly terms?: string;
  readonly 'credit-limit'?: string;
  readonly 'settlement-seconds'?: string;
  readonly 'min-charge'?: string;
  readonly discounts?: string;
  readonly 'gpu-count'?: string;
  readonly 'gpu-model'?: string;
  readonly 'weights-digest'?: string;
  readonly quantization?: string;
  readonly engine?: string;
  readonly 'context-length'?: string;
  readonly parameters?: string;
  readonly json?: boolean;
  readonly processes?: string;
  readonly 'key-rotation-seconds'?: string;
}

const DEFAULT_PARAMETERS = ['tools', 'tool_choice', 'response_format', 'logprobs', 'top_logprobs', 'seed', 'stop', 'temperature', 'top_p'];

/**
 * The identity each served model states in the evidence and its offer (protocol/model-identity.ts), from the flags:
 * they apply to every model the upstream serves. The weights digest is the operator's to give (a SHA-256 manifest of
 * the weight files, or the dm-verity root hash of their volume); under sim without one it is derived from the model id
 * and quantization, SHA-256("gm sim weights" 0x00 model 0x00 quantization), so sim workers of one model and
 * quantization agree. A real worker without --weights-digest states no identity (its offers then match no
 * quantization or weights constraint).
 */
export function identityFromFlags(f: Pick<WorkerFlags, 'weights-digest' | 'quantization' | 'engine' | 'context-length' | 'parameters'>, sim: boolean): ((model: string) => ModelIdentity) | undefined {
  const given = f['weights-digest'];
  if (given !== undefined && !/^[0-9a-fA-F]{64}$/.test(given)) throw configError('USAGE', '--weights-digest must be 64 hex digits (a SHA-256 digest)');
  if (given === undefined && !sim) return undefined;
  const quantization = f.quantization ?? 'bf16';
  const [engine, engineVersion] = (f.engine ?? 'vllm/0.6.3').split('/', 2);
  if (!engine || !engineVersion) throw configError('USAGE', '--engine must be NAME/VERSION, e.g. vllm/0.6.3');
  const contextLength = intFlag(f['context-length'], 'context-length', 32_768, 1, 0xffffffff);
  const parameters = f.parameters === undefined ? DEFAULT_PARAMETERS : f.parameters.split(',').map((p) => p.trim()).filter((p) => p.length > 0);
  const make = (weightsDigest: Uint8Array): ModelIdentity => {
    try {
      return normalizeIdentity({ weightsDigest, quantization, engine, engineVersion, contextLength, parameters });
    } catch (e) {
      throw configError('USAGE', `model identity flags: ${(e as Error).message}`, { cause: e });
    }
  };
  make(new Uint8Array(32)); // refuse bad flags at start, not at the first registration
  if (given !== undefined) {
    const fixed = make(fromHex(given));
    return () => fixed;
  }
  return (model) => make(sha256(new TextEncoder().encode(`gm sim weights\0${model}\0${quantization}`)));
}

type TermsFlags = { readonly terms?: string | undefined; readonly 'credit-limit'?: string | undefined; readonly 'settlement-seconds'?: string | undefined; readonly 'min-charge'?: string | undefined; readonly discounts?: string | undefined };

/**
 * The offer's payment terms from the flags, with the price terms any kind may add (protocol/offer-terms.ts):
 * `--min-charge N` (integer settlement units per request) and `--discounts FROM:BPS,...` (the graduated output
 * discount schedule, e.g. `1000:1000,10000:2500`), checked by the same rule as a signed offer's.
 */
export function termsFromFlags(f: TermsFlags): PaymentTerms {
  const base = kindFromFlags(f);
  const price: { minCharge?: bigint; discounts?: DiscountTier[] } = {};
  if (f['min-charge'] !== undefined) {
    if (!/^\d{1,18}$/.test(f['min-charge'])) throw configError('USAGE', `--min-charge must be a positive integer of settlement units (got ${f['min-charge']})`);
    price.minCharge = BigInt(f['min-charge']);
  }
  if (f.discounts !== undefined) {
    price.discounts = f.discounts.split(',').map((t) => {
      const m = /^(\d{1,15}):(\d{1,5})$/.exec(t.trim());
      if (!m) throw configError('USAGE', `--discounts takes FROM:BPS pairs separated by commas (got ${t})`);
      return { fromOutputTokens: Number(m[1]), basisPoints: Number(m[2]) };
    });
  }
  try {
    checkPriceTerms(price);
  } catch (e) {
    throw configError('USAGE', `--min-charge / --discounts: ${(e as Error).message}`, { cause: e });
  }
  return { ...base, ...price };
}

/**
 * The payment kind: `postpaid` needs its credit limit (integer micro-units) and settlement period (seconds, at
 * least 1); the two are refused with the other terms, where they would mean nothing.
 */
function kindFromFlags(f: TermsFlags): PaymentTerms {
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

/** Where the hotkey seed file's permissions are read (tests hand in their own). */
export type ModeOf = (path: string) => Promise<number>;
const fileMode: ModeOf = async (p) => (await fsp.stat(p)).mode;

/**
 * The operator hotkey's 32-byte sr25519 mini-secret. It signs every offer, so it must not show in process listings:
 * argv is readable by every user of the machine (`ps`, /proc/<pid>/cmdline), the environment and a 0600 file only by
 * the owner. `--hotkey-seed` on the command line is therefore refused while the command line is parsed
 * (cli/commands.ts), not warned about: by the time a warning prints the secret has already been exposed. A seed
 * file readable by group or others is refused too (as ssh does).
 * Under sim, with neither source, a random seed is used. Undefined: no seed (a real worker then refuses to start).
 */
export interface HotkeySources {
  readonly 'hotkey-seed'?: string | undefined;
  readonly 'hotkey-seed-file'?: string | undefined;
  readonly wallet?: string | undefined;
  readonly hotkey?: string | undefined;
  readonly 'wallet-path'?: string | undefined;
}

/** Reads a secret file only its owner can read (as ssh does for keys). */
async function ownerOnly(file: string, io: Pick<ServiceIo, 'readFile'>, modeOf: ModeOf): Promise<string> {
  let mode: number;
  try {
    mode = await modeOf(file);
  } catch (e) {
    throw configError('FILE_UNREADABLE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { cause: e });
  }
  if ((mode & 0o077) !== 0) throw configError('HOTKEY_SEED_FILE_EXPOSED', `${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`);
  return new TextDecoder().decode(await io.readFile(file)).trim();
}

/**
 * The hotkey's mini-secret from a Bittensor wallet: `<wallet-path>/<wallet>/hotkeys/<hotkey>` (default wallet path
 * ~/.bittensor/wallets), the JSON keyfile the bittensor tools write (opentensor/bittensor `bittensor/keyfile.py`
 * serialized_keypair_to_keyfile_data: accountId, publicKey, privateKey, secretPhrase, secretSeed, ss58Address; loaded
 * back from `secretSeed`, `bittensor/_crypto/keyfiles.py` load_keypair_from_data). The seed is `secretSeed`
 * ("0x" + 64 hex, the sr25519 mini-secret); the key it derives must be the file's `ss58Address` (and `publicKey`
 * when present), else WALLET_KEY_MISMATCH. An encrypted keyfile (NaCl, Ansible Vault or the legacy form) is refused
 * (WALLET_ENCRYPTED): hotkeys are kept unencrypted by the bittensor tools, and gm asks for no password.
 */
async function walletSeed(f: HotkeySources, io: Pick<ServiceIo, 'readFile'>, modeOf: ModeOf): Promise<Uint8Array> {
  const name = f.wallet;
  const hk = f.hotkey;
  const safe = (x: string | undefined): x is string => x !== undefined && /^[A-Za-z0-9._-]{1,64}$/.test(x) && x !== '.' && x !== '..';
  if (!safe(name) || !safe(hk)) throw configError('USAGE', '--wallet NAME and --hotkey NAME go together, each 1..64 of [A-Za-z0-9._-]');
  const file = join(f['wallet-path'] ?? join(homedir(), '.bittensor', 'wallets'), name, 'hotkeys', hk);
  const text = await ownerOnly(file, io, modeOf);
  if (/^(\$NACL|\$ANSIBLE_VAULT|gAAAAA)/.test(text)) throw configError('WALLET_ENCRYPTED', `${file} is encrypted; gm reads unencrypted hotkey files only`);
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw configError('WALLET_MALFORMED', `${file} is not a bittensor keyfile (JSON)`, { cause: e });
  }
  const seedHex = j.secretSeed;
  if (typeof seedHex !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(seedHex)) throw configError('WALLET_MALFORMED', `${file} has no secretSeed of 0x + 64 hex digits`);
  const seed = fromHex(seedHex.slice(2));
  const key = hotkeyFromSeed(seed);
  if (j.ss58Address !== key.address || (typeof j.publicKey === 'string' && j.publicKey.toLowerCase() !== `0x${hex(key.publicKey)}`)) {
    throw configError('WALLET_KEY_MISMATCH', `${file}: the key its secretSeed derives is not its ss58Address`);
  }
  return seed;
}

export async function hotkeySeedFrom(f: HotkeySources, io: Pick<ServiceIo, 'readFile'>, modeOf: ModeOf = fileMode): Promise<Uint8Array | undefined> {
  const file = f['hotkey-seed-file'];
  const sources = [file !== undefined, f['hotkey-seed'] !== undefined, f.wallet !== undefined || f.hotkey !== undefined].filter(Boolean).length;
  if (sources > 1) throw configError('USAGE', 'give the hotkey in one of --hotkey-seed-file, GM_HOTKEY_SEED or --wallet/--hotkey');
  if (f.wallet !== undefined || f.hotkey !== undefined) return walletSeed(f, io, modeOf);
  let text: string;
  if (file !== undefined) text = await ownerOnly(file, io, modeOf);
  else if (f['hotkey-seed'] !== undefined) text = f['hotkey-seed'].trim();
  else return undefined;
  // Never echo the value: a malformed secret is still mostly a secret.
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw configError('USAGE', `the hotkey seed (${file ?? 'GM_HOTKEY_SEED'}) must be 64 hex digits (a 32-byte sr25519 mini-secret)`);
  return fromHex(text);
}

function policyDocument(bytes: Uint8Array, file: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw configError('POLICY_INVALID', `${file} is not valid JSON`, { cause: e });
  }
}

/**
 * The GPUs the offers state: `--gpu-count N --gpu-model NAME` (together), or by default what the latest collected GPU
 * evidence shows (worker/offers.ts gpusOfEvidence). Either way the enclave takes the offer only when its verified
 * evidence shows that many GPUs of that model.
 */
export function gpusFromFlags(f: Pick<WorkerFlags, 'gpu-count' | 'gpu-model'>, collected: () => GpuStatement | undefined): () => GpuStatement | undefined {
  const model = f['gpu-model'];
  if ((f['gpu-count'] === undefined) !== (model === undefined)) throw configError('USAGE', '--gpu-count and --gpu-model are given together (or neither, to state the GPUs of the collected evidence)');
  if (model === undefined) return collected;
  if (model.length < 1 || model.length > 64) throw configError('USAGE', '--gpu-model must be 1..64 characters');
  const stated = { count: intFlag(f['gpu-count'], 'gpu-count', 1, 1, 64), model };
  return () => stated;
}

export async function run(f: WorkerFlags, io: ServiceIo): Promise<number> {
  if (!f.upstream) throw configError('USAGE', 'gm worker needs --upstream URL (the OpenAI-compatible server, e.g. http://127.0.0.1:8000)');
  const maxStreams = intFlag(f['max-streams'], 'max-streams', 64, 1, 100_000);
  // A serving process of several: the primary checked every flag and holds the secrets; it needs none of them.
  if (isWorkerProcess()) return serveWorkerProcess({ upstream: f.upstream, logLevel: f['log-level'], maxStreams }, io);
  const processes = f.processes === undefined ? availableParallelism() : intFlag(f.processes, 'processes', 1, 1, 256);
  // As the enclave's: at least a minute, so a re-registration lands well before the previous keys retire.
  const keyRotationMs = intFlag(f['key-rotation-seconds'], 'key-rotation-seconds', 3600, 60, 7 * 24 * 3600) * 1000;
  const givenSeed = await hotkeySeedFrom(f, io);
  if (!f.enclave?.length) throw configError('USAGE', 'gm worker needs --enclave URL (repeat for several enclaves)');
  const tee = await selectTee({ tee: parseTeeChoice(f.tee), ...(f['configfs-root'] ? { configfsRoot: f['configfs-root'] } : {}) });
  const cmd = f['gpu-evidence-cmd'];
  if (!tee.sim && !cmd) throw configError('USAGE', 'a real worker needs --gpu-evidence-cmd CMD (prints nvtrust GPU evidence JSON for the nonce in $GM_GPU_NONCE)');
  const gpu = statingGpus(cmd ? commandGpuSource(cmd) : simGpuSource());
  const gpus = gpusFromFlags(f, gpu.stated);
  const policyFile = f['enclave-policy'];
  // Read before anything starts: a worker never registers with an enclave it has no policy for.
  const enclavePolicy = policyFile ? parseClientPolicy(policyDocument(await io.readFile(policyFile), policyFile), '--enclave-policy') : undefined;
  if (!enclavePolicy && !tee.sim) throw configError('USAGE', 'a real worker needs --enclave-policy FILE (the enclave measurements it registers with, the client policy format)');
  // The vendor roots its enclaves' evidence must chain to; a sim worker on the sim policy accepts sim evidence only.
  const trust = tee.sim && !enclavePolicy ? undefined : await trustFromDir(trustDirFrom(io.env, homedir()), fsp, tee.sim ? {} : { requiredBy: 'a real worker verifies its enclaves against the pinned vendor roots' });
  const log = createLogger({ service: 'worker', sim: tee.sim, level: (f['log-level'] ?? 'info') as 'info', sink: (l) => io.err(l) });
  const seed = givenSeed ?? (tee.sim ? crypto.getRandomValues(new Uint8Array(32)) : undefined);
  if (!seed) throw configError('USAGE', 'gm worker needs the operator hotkey seed (32-byte sr25519 mini-secret, 64 hex) in --hotkey-seed-file FILE or GM_HOTKEY_SEED to sign offers');
  const terms = termsFromFlags(f);
  const identity = identityFromFlags(f, tee.sim);
  // The process's clock and network, handed down: nothing the agent runs reads either itself.
  const now = () => new Date();
  const net: FetchLike = (i, init) => fetch(i, init);
  const offers = offerSigner({
    ...(identity ? { identity } : {}),
    gpus,
    currency: f.currency ?? 'USD', pricePerMInput: BigInt(intFlag(f['price-in'], 'price-in', 100_000)), pricePerMOutput: BigInt(intFlag(f['price-out'], 'price-out', 200_000)),
    terms, capacity: intFlag(f.capacity, 'capacity', 16, 1), ttftMs: intFlag(f['ttft-ms'], 'ttft-ms', 500), tokensPerSecond: intFlag(f.tps, 'tps', 50), hotkeySeed: seed,
    now: () => now().getTime(),
  });
  const options = { upstream: f.upstream, enclaves: f.enclave, tee, gpu: gpu.source, log, offers, fetch: net, now, listen: f.listen ?? '127.0.0.1:0', ...(identity ? { identity } : {}), ...(enclavePolicy ? { enclavePolicy } : {}), ...(trust ? { trust } : {}), maxConcurrentStreams: maxStreams, keyRotationMs, ...(f['public-url'] ? { publicUrl: f['public-url'] } : {}) };
  let w: Awaited<ReturnType<typeof startWorkerPrimary>>;
  if (processes > 1) {
    const p = await startPrimary({ processes, listen: options.listen, log, tee, gpu: gpu.source });
    w = await startWorkerPrimary({ ...options, keys: p.keys }, p.elsewhere);
  } else w = await startWorker(options);
  // --json: the same as one JSON object per line, for scripts.
  io.out(f.json ? `${JSON.stringify({ event: 'listening', worker: w.id, url: w.url, sim: tee.sim })}\n` : `gm worker ${w.id}${tee.sim ? ' (sim)' : ''} listening on ${w.url}\n`);
  w.registered.then(
    () => io.out(f.json ? `${JSON.stringify({ event: 'registered', worker: w.id, enclaves: f.enclave!.length })}\n` : `gm worker ${w.id}: registered with ${f.enclave!.length} enclave(s)\n`),
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
