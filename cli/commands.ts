/**
 * Every `gm` command, declared once: its words, positional arguments, flags with their help and GM_* environment
 * names, and the module that runs it (imported only when the command runs, so `gm --help` loads none of them).
 * The services' logic stays in their folders (enclave/main.ts, worker/main.ts, host/main.ts,
 * worker/dev-model/main.ts); the client's commands and the receipts commands live beside this file.
 */
import { configError } from '../attestation/errors.ts';
import { command, type CommandSpec, type FlagSpec, type Flags } from './program.ts';

/** HOST:PORT, [V6]:PORT, :PORT or PORT, with the port in range: refused before any socket is opened. */
export function checkListen(v: string, flag: string): void {
  const m = /^(?:(\[[^\]]+\]|[^:[\]]*):)?(\d+)$/.exec(v.trim());
  if (!m) throw configError('USAGE', `--${flag} must be HOST:PORT, :PORT or PORT (got ${v})`);
  if (Number(m[2]) > 65535) throw configError('USAGE', `--${flag} port must be at most 65535 (got ${m[2]})`);
}

/** An absolute http(s) URL. */
export function checkUrl(v: string, flag: string): void {
  let u: URL | undefined;
  try {
    u = new URL(v);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw configError('USAGE', `--${flag} must be an http(s) URL (got ${v})`);
}

const json = { help: 'print the result as JSON on stdout (errors too)', env: false } as const satisfies FlagSpec;
const file = (help: string) => ({ value: 'FILE', help }) as const satisfies FlagSpec;
const url = (help: string) => ({ value: 'URL', help, check: checkUrl }) as const satisfies FlagSpec;
const listen = (def: string) => ({ value: 'ADDR', help: `address to listen on: HOST:PORT, :PORT or PORT (default ${def})`, check: checkListen }) as const satisfies FlagSpec;
const now = { value: 'ISO', help: 'verify as of this ISO-8601 time instead of now' } as const satisfies FlagSpec;
const logLevel = { value: 'LEVEL', help: 'debug, info, warn or error (default info)' } as const satisfies FlagSpec;
const configfsRoot = file('configfs-tsm root to use instead of /sys/kernel/config/tsm (tests)');

// ---- client: verification, trust anchors, chat, demo

export const VERIFY_URL = {
  policy: file('client policy JSON: the enclave measurements to accept'),
  'allow-sim': { help: 'accept a simulated TEE (evidence signed by a fake vendor): for sim stacks only' },
  relay: url('fetch the evidence through this relay (a host shim) instead of the URL itself'),
  save: file('write the verified evidence bundle here, for `gm verify bundle` later'),
  collateral: url("complete missing collateral from this host shim's cache (verified against the vendor roots)"),
  json,
} as const;

export const VERIFY_SNP = {
  report: file('the SEV-SNP attestation report, binary or hex (required)'),
  cert: file('the VCEK or VLEK certificate, PEM or DER'),
  chain: file("ASK (or ASVK) then ARK, PEM, as AMD's cert_chain; default: the pinned roots from the trust directory"),
  crl: file("AMD's CRL for the product, DER or PEM"),
  policy: file('SEV-SNP policy JSON (default: debug forbidden, VMPL 0, no migration agent)'),
  now,
  'allow-unpinned': { help: "trust a --chain whose ARK matches no pinned AMD root (sim chains); the report says so" },
  json,
} as const;

export const VERIFY_TDX = {
  quote: file('the TDX quote, binary or hex (required)'),
  collateral: { value: 'FILE', repeat: true, help: 'collateral, recognized by content: dcap-qvl JSON, Intel PCS tcbInfo / enclaveIdentity responses, their issuer chain (PEM or URL-encoded header), CRLs (DER or PEM)' },
  policy: file('TDX policy JSON'),
  now,
  'ccel-log': file('the CCEL event log, to replay into the RTMRs'),
  'ccel-table': file('the CCEL ACPI table (with --ccel-log)'),
  'no-revocation': { help: 'verify without CRLs (the report shows SKIP rows)' },
  'no-qe-identity': { help: 'verify without the QE identity (the report shows SKIP rows)' },
  json,
} as const;

export const VERIFY_GPU = {
  evidence: file('nvtrust/nvattest evidence JSON ([{arch, certificate, evidence}]), or a raw report (binary or hex) with --chain'),
  chain: file('the device certificate chain, PEM (for a raw --evidence report)'),
  nonce: { value: 'HEX', help: 'the 32-byte nonce the evidence must answer, hex' },
  rim: { value: 'FILE', repeat: true, help: 'a driver or VBIOS RIM (XML)' },
  ocsp: { value: 'FILE', repeat: true, help: 'an OCSP response for the chain (DER or base64)' },
  policy: file('GPU policy JSON (without it only verification runs, and the policy row says so)'),
  now,
  'collected-at': { value: 'ISO', help: "when the evidence was collected, for the policy's maximum age" },
  'sim-root': file('use this sim device root instead of the pinned NVIDIA one (marked SIM)'),
  'sim-rim-root': file('use this sim RIM root instead of the pinned NVIDIA one (marked SIM)'),
  nras: file('a saved NRAS attestation result (EAT) to verify instead of evidence'),
  jwks: file('the JWKS to verify --nras against'),
  issuer: { value: 'URL', help: 'the issuer the --nras tokens must name' },
  json,
} as const;

export const VERIFY_BUNDLE = {
  policy: VERIFY_URL.policy,
  'allow-sim': VERIFY_URL['allow-sim'],
  nonce: { value: 'HEX', help: 'the 32-byte nonce that was asked for (default: the one in the bundle)' },
  now,
  'max-age': { value: 'SECONDS', help: 'refuse evidence older than this (default: no age check, for audits after the fact)' },
  collateral: VERIFY_URL.collateral,
  json,
} as const;

export const MEASURE_SNP = {
  ovmf: file('the OVMF firmware image the guest launches with (required)'),
  'ovmf-hash': { value: 'HEX', help: "the OVMF's 48-byte launch digest, hex, instead of hashing --ovmf's pages" },
  kernel: file('the kernel given to the VMM (-kernel), measured through the OVMF hash table'),
  initrd: file('the initrd (-initrd)'),
  append: { value: 'TEXT', help: 'the kernel command line (-append); may be empty', allowEmpty: true },
  vcpus: { value: 'N', help: 'number of vCPUs (required)' },
  'vcpu-type': { value: 'NAME', help: 'the vCPU model, e.g. EPYC-v4 (or --vcpu-sig)' },
  'vcpu-sig': { value: 'N', help: 'the vCPU signature (CPUID 1 EAX), decimal or 0x-hex' },
  vmm: { value: 'KIND', help: 'qemu (default), ec2 or gce' },
  'guest-features': { value: 'N', help: 'SEV features of the guest, decimal or 0x-hex (default 0x1)' },
  svsm: file('an SVSM image launched before the OVMF (with --vars-size)'),
  'vars-size': { value: 'N', help: 'size of the OVMF variable store under an SVSM' },
  'sev-es': { help: 'print the 32-byte SEV-ES launch digest instead' },
  report: file("a guest's SEV-SNP or Azure HCL report (any encoding gm reads) whose MEASUREMENT to compare with; its signature is not checked here"),
  expected: { value: 'HEX', help: 'the MEASUREMENT to compare with, hex' },
  json: { help: "print every input's digest and the digest after each step as JSON", env: false },
} as const;

export const MEASURE_TDX = {
  tdvf: file('the TDVF (OVMF) image: computes MRTD'),
  'page-order': { value: 'KIND', help: 'single-pass (default) or two-pass: the order the VMM adds TDVF pages in' },
  'ccel-log': file('the CCEL event log: replays RTMR0..3 and attributes every extend'),
  'ccel-table': file('the CCEL ACPI table (with --ccel-log)'),
  quote: file('a TDX quote (raw, hex, base64 or JSON) to compare every register with'),
  kernel: file('a kernel to locate in the event log'),
  initrd: file('an initrd to locate in the event log'),
  cmdline: { value: 'TEXT', help: 'a kernel command line to locate in the event log; may be empty', allowEmpty: true },
  acpi: { value: 'FILE', repeat: true, help: 'an ACPI table to locate in the event log' },
  'efi-app': { value: 'FILE', repeat: true, help: 'an EFI application (shim, GRUB, a UKI, a kernel EFI stub) to locate by its Authenticode digest' },
  json,
} as const;

export const TRUST_FETCH = { 'base-url': url("a mirror serving every anchor file (default: the vendors' own hosts)"), json } as const;

export const CHAT = {
  url: url('the enclave (required)'),
  relay: url('send through this relay (a host shim); the enclave is still verified end to end'),
  model: { value: 'MODEL', help: 'the model to ask (default: the first one the verified workers offer)' },
  policy: VERIFY_URL.policy,
  'allow-sim': { ...VERIFY_URL['allow-sim'], env: false },
  'api-key': { value: 'KEY', help: 'API key for the account to charge (default: none; an open-access enclave serves anonymous requests)' },
  'max-tokens': { value: 'N', help: 'upper bound on the tokens of the answer' },
  provider: { value: 'JSON', help: 'routing preferences as OpenRouter\'s provider object, e.g. \'{"sort":"latency"}\' (sealed with the request)' },
  models: { value: 'A,B,C', help: 'fallback models after --model, in order (up to 20); with --model default, the pool itself' },
  collateral: VERIFY_URL.collateral,
  report: { help: 'print the full verification table on stderr', env: false },
  'no-stream': { help: 'ask for the whole answer at once instead of a stream', env: false },
  json,
} as const;

export const PROXY = {
  url: url('the enclave (required)'),
  relay: CHAT.relay,
  policy: VERIFY_URL.policy,
  'allow-sim': { ...VERIFY_URL['allow-sim'], env: false },
  listen: listen('127.0.0.1:8787'),
  'allow-remote': { help: 'listen on a non-loopback address (needs a bearer token every request must carry)', env: false },
  'token-file': file('a file holding the bearer token clients of this proxy must send (at least 16 characters)'),
  'proxy-token': {
    value: 'TOKEN',
    help: 'the bearer token clients of this proxy must send (instead of --token-file)',
    envOnly: { code: 'PROXY_TOKEN_ON_ARGV', message: 'the proxy token may not be given on the command line (every local user can read it there): use --token-file FILE or GM_PROXY_TOKEN' },
  },
  'api-key': {
    value: 'KEY',
    help: "the API key the enclave charges (default: each client's own Authorization, sealed into its request)",
    envOnly: { code: 'API_KEY_ON_ARGV', message: 'a long-running proxy takes its API key from GM_API_KEY only (every local user can read the command line)' },
  },
  collateral: VERIFY_URL.collateral,
} as const;

export const DEMO = {
  prompt: { value: 'TEXT', help: 'the question to ask' },
  model: { value: 'MODEL', help: 'the model to ask (default: the first dev-model)' },
  'token-ms': { value: 'N', help: 'milliseconds between streamed tokens (default 20)' },
  verbose: { help: "print the services' logs (and, on an unexpected failure, the stack trace)" },
  keep: { help: 'leave the stack running, with its status page, until Ctrl-C' },
  json,
} as const;

// ---- services

export const ENCLAVE = {
  tee: { value: 'KIND', help: 'auto (default: configfs-tsm, refusing to start without a TEE), configfs or sim' },
  listen: listen('127.0.0.1:8443'),
  'worker-policy': file('allowed worker measurements and GPU policy (required with a real TEE)'),
  'allow-sim-workers': { help: 'accept simulated workers (default under --tee sim)' },
  'max-body': { value: 'BYTES', help: 'largest request body accepted' },
  'max-streams': { value: 'N', help: 'concurrent answer streams' },
  'configfs-root': configfsRoot,
  'log-level': logLevel,
  router: { value: 'KIND', help: 'market (default: signed offers, ledger) or first' },
  ledger: file('the ledger: a SQLite FILE (default :memory:) or postgres://URL shared by replicas'),
  'ledger-key-file': file('--ledger postgres://: a file only its owner can read holding the 32-byte ledger key in hex (default: a key generated in memory, for one replica)'),
  join: url('with --ledger postgres://...: a running replica to obtain the shared ledger key from (mutual attestation)'),
  'peer-policy': file('with --ledger postgres://...: the client policy other replicas must pass to share the ledger key (default under --tee sim: the sim measurement)'),
  'fee-bps': { value: 'N', help: "the enclave's fee in basis points of the worker cost (default 0)" },
  'open-access': { help: 'serve requests without an API key from a house account (default under --tee sim)' },
  'sim-platform': { value: 'KIND', help: 'sim-sev-snp (default) or sim-tdx' },
  'key-rotation-seconds': { value: 'N', help: 'HPKE key lifetime (default 3600)' },
  collateral: url("a host shim whose collateral cache answers OCSP and RIM requests for workers' GPUs"),
  'operator-token-file': file('a file holding the bearer token that GET /v1/operator/metrics requires'),
  'operator-token': {
    value: 'TOKEN',
    help: 'the bearer token for GET /v1/operator/metrics (instead of --operator-token-file)',
    envOnly: { code: 'OPERATOR_TOKEN_ON_ARGV', message: 'the operator token may not be given on the command line (every local user can read it there): use --operator-token-file FILE or GM_OPERATOR_TOKEN' },
  },
  'require-request-time': { help: "refuse requests without gm's sealed request time (standard OHTTP clients are then not served)" },
  json: { help: 'print the URL (and under sim the account and its API key) as JSON lines', env: false },
  pools: file('model pools JSON: {"name": ["model", ...]}, up to 20 models each in priority order ("default" is the default pool)'),
  processes: { value: 'N', help: 'processes sharing the listening socket (default: the number of cores; 1 with the in-memory ledger)' },
} as const;

export const WORKER = {
  upstream: url('the OpenAI-compatible server to forward to (required)'),
  enclave: { value: 'URL', repeat: true, help: 'an enclave to register with (required; repeat for several, or GM_ENCLAVE=a,b)', check: checkUrl },
  'enclave-policy': file('client policy JSON: the enclave measurements this worker registers with (required with a real TEE; default under --tee sim: the sim measurement)'),
  tee: ENCLAVE.tee,
  'gpu-evidence-cmd': { value: 'CMD', help: 'prints nvtrust GPU evidence JSON for the nonce in $GM_GPU_NONCE (required with a real TEE)' },
  listen: listen('127.0.0.1:0'),
  'public-url': url('the URL enclaves reach this worker at (default: the listening URL)'),
  'configfs-root': configfsRoot,
  'log-level': logLevel,
  'price-in': { value: 'N', help: 'micro-units of the currency per million input tokens (default 100000)' },
  'price-out': { value: 'N', help: 'micro-units per million output tokens (default 200000)' },
  currency: { value: 'C', help: 'currency of the prices (default USD)' },
  capacity: { value: 'N', help: 'concurrent requests offered (default 16)' },
  'hotkey-seed': {
    value: 'HEX',
    help: "the operator hotkey's 32-byte sr25519 mini-secret, 64 hex; signs offers (random under --tee sim)",
    envOnly: { code: 'HOTKEY_SEED_ON_ARGV', message: 'the hotkey seed may not be given on the command line (every local user can read it there): use --hotkey-seed-file FILE (mode 0600) or GM_HOTKEY_SEED' },
  },
  'hotkey-seed-file': file('a file only its owner can read (mode 0600) holding the hotkey seed, 64 hex'),
  wallet: { value: 'NAME', help: 'a Bittensor wallet: the hotkey comes from ~/.bittensor/wallets/NAME/hotkeys/<--hotkey> (its secretSeed)' },
  hotkey: { value: 'NAME', help: 'with --wallet: the hotkey file name in the wallet' },
  'wallet-path': { value: 'DIR', help: 'with --wallet: the wallets directory (default ~/.bittensor/wallets)' },
  'ttft-ms': { value: 'N', help: 'time to first token promised in offers (default 500)' },
  tps: { value: 'N', help: 'tokens per second promised in offers (default 50)' },
  'max-streams': { value: 'N', help: 'gateway exchanges served at once (default 64)' },
  terms: { value: 'KIND', help: 'per-request (default), prepaid or postpaid' },
  'credit-limit': { value: 'N', help: 'postpaid credit limit in micro-units' },
  'settlement-seconds': { value: 'S', help: 'postpaid settlement period' },
  'min-charge': { value: 'N', help: 'minimum worker cost per request, integer settlement units (micro-USD; rao for TAO)' },
  discounts: { value: 'FROM:BPS,...', help: 'graduated output discount: output tokens beyond FROM cost BPS basis points less (e.g. 1000:1000,10000:2500)' },
  'gpu-count': { value: 'N', help: 'GPUs stated in offers, with --gpu-model (default: those of the collected GPU evidence); the enclave refuses offers its verified evidence does not show' },
  'gpu-model': { value: 'NAME', help: "with --gpu-count: the GPUs' model as the device certificate's issuer CN names it (e.g. \"GH100 A01 GSP BROM\")" },
  'weights-digest': { value: 'HEX', help: 'SHA-256 manifest digest (or dm-verity root hash) of the served weights, 64 hex; stated in evidence and offers (derived from the model under --tee sim)' },
  quantization: { value: 'Q', help: 'quantization of the served weights: bf16, fp8, int4, ... (default bf16)' },
  engine: { value: 'NAME/VERSION', help: 'inference engine and version (default vllm/0.6.3)' },
  'context-length': { value: 'N', help: 'context length in tokens (default 32768)' },
  parameters: { value: 'LIST', help: 'request parameters the deployment honours, comma-separated (default tools,tool_choice,response_format,logprobs,top_logprobs,seed,stop,temperature,top_p)' },
  json: { help: 'print the URL and the registration as JSON lines', env: false },
  processes: { value: 'N', help: 'processes sharing the listening socket, one attested identity (default: the number of cores)' },
  'key-rotation-seconds': { value: 'N', help: 'OHTTP key lifetime: a new key configuration every N seconds, the previous one accepted one more period (default 3600)' },
} as const;

export const DEV_MODEL = {
  listen: listen('127.0.0.1:0'),
  'token-ms': { value: 'N', help: 'milliseconds between tokens (default 20)' },
  'fail-after': { value: 'N', help: 'end every stream with an error after N tokens (tests)' },
  name: { value: 'MODEL', help: 'the model name served (default gm-dev)' },
  json: { help: 'print the URL as a JSON line', env: false },
} as const;

export const HOST = {
  enclave: { ...url('the enclave to relay to (required); give it once per replica to route across several by OHTTP key id'), repeat: true },
  listen: listen('127.0.0.1:8080'),
  policy: file("the operator's client policy for the enclave (required unless --allow-sim)"),
  'allow-sim': { help: 'accept a simulated enclave' },
  'cache-dir': file('collateral cache (default $XDG_CACHE_HOME/gm/collateral)'),
  'check-interval': { value: 'SECONDS', help: 'how often the gate re-verifies the enclave (default 60)' },
  'amd-kds': url('AMD KDS base URL (mirrors, tests)'),
  'intel-pcs': url('Intel PCS base URL'),
  'intel-certs': url("Intel's certificate host base URL"),
  'nvidia-rim': url('NVIDIA RIM service base URL'),
  'nvidia-ocsp': url('NVIDIA OCSP responder base URL'),
} as const;

// ---- receipts and accounts

export const RECEIPTS_VERIFY = {
  ledger: file('verify a whole ledger (with its balance audit) instead of a receipts FILE: a SQLite FILE or postgres://URL'),
  'ledger-key-file': file('--ledger postgres://: a file only its owner can read holding the 32-byte ledger key in hex, which opens the sealed columns'),
  key: { value: 'HEX', repeat: true, help: "the enclave's Ed25519 receipt public key (from a verified bundle)" },
  'credit-key': { value: 'HEX', repeat: true, help: "--ledger: the operator's Ed25519 credit public key (signs account openings and deposits)" },
  head: { value: 'FILE|URL', help: "--ledger: the latest signed chain head (a saved copy, or the enclave's /v1/ledger/head): finds receipts cut from the end" },
  json,
} as const;

export const RECEIPTS_PROVE = {
  receipt: file('one receipt envelope (JSON) as the client received it'),
  offers: file('the offer listing (GET /v1/market/offers) taken while the request was routed'),
  key: { value: 'HEX', help: "the enclave's Ed25519 receipt public key (from a verified bundle)" },
  json,
} as const;

export const RECEIPTS_ACCOUNT = {
  ledger: file('the ledger database (required): a SQLite FILE, or postgres://URL for account commands'),
  'ledger-key-file': file('--ledger postgres://: a file only its owner can read holding the 32-byte ledger key in hex'),
  currency: { value: 'C', help: 'create, pay-worker: currency (default USD for create)' },
  prepaid: { value: 'AMOUNT', help: 'create: a prepaid account with this balance' },
  'credit-limit': { value: 'AMOUNT', help: 'create: a postpaid account with this credit limit' },
  account: { value: 'ID', help: 'deposit: the account' },
  worker: { value: 'ID', help: 'pay-worker: the worker' },
  amount: { value: 'AMOUNT', help: 'deposit, pay-worker: decimal amount (5.25 = 5,250,000 micro-units)' },
  'credit-key-file': file("create, deposit: a file only its owner can read (mode 0600) holding the operator's credit key, a 32-byte Ed25519 seed in hex, which signs the credit"),
  json,
} as const;

export const RECEIPTS_STATEMENT = {
  ledger: RECEIPTS_ACCOUNT.ledger,
  'ledger-key-file': RECEIPTS_ACCOUNT['ledger-key-file'],
  account: { value: 'ID', help: 'statement of this account' },
  worker: { value: 'ID', help: "statement of this worker's payouts" },
  now: { value: 'ISO', help: 'the time the statement is made at (default now)' },
  json,
} as const;

export type VerifyUrlFlags = Flags<typeof VERIFY_URL>;
export type VerifySnpFlags = Flags<typeof VERIFY_SNP>;
export type VerifyTdxFlags = Flags<typeof VERIFY_TDX>;
export type VerifyGpuFlags = Flags<typeof VERIFY_GPU>;
export type VerifyBundleFlags = Flags<typeof VERIFY_BUNDLE>;
export type MeasureSnpFlags = Flags<typeof MEASURE_SNP>;
export type MeasureTdxFlags = Flags<typeof MEASURE_TDX>;
export type ChatFlags = Flags<typeof CHAT>;
export type DemoFlags = Flags<typeof DEMO>;
export type ProxyFlags = Flags<typeof PROXY>;
export type ReceiptsVerifyFlags = Flags<typeof RECEIPTS_VERIFY>;
export type ReceiptsProveFlags = Flags<typeof RECEIPTS_PROVE>;
export type ReceiptsAccountFlags = Flags<typeof RECEIPTS_ACCOUNT>;
export type ReceiptsStatementFlags = Flags<typeof RECEIPTS_STATEMENT>;
export type JsonFlag = Flags<{ json: typeof json }>;

const EXIT_VERIFY = 'Exit 0 verified, 1 rejected, 2 usage or configuration error.';
/** What the commands that verify an enclave say about the trust directory. */
const CLIENT_TRUST = 'Real evidence is checked against the pinned vendor roots of the trust directory (GM_TRUST_DIR, else\n~/.config/gm/trust); a certificate there that fails its pin, or a file that cannot be read, stops the command\n(TRUST_PIN_MISMATCH, TRUST_DIR_UNREADABLE).';

export const COMMANDS: readonly CommandSpec[] = [
  command({
    name: 'demo',
    summary: 'run the whole stack on loopback in sim mode and stream one encrypted answer',
    flags: DEMO,
    details: 'Starts an enclave, a host shim, two workers and two dev-models in this process (sim TEE), verifies the\nenclave through the relay with a fresh nonce, streams one chat completion and prints its receipt.',
    run: async (f, _a, io) => (await import('./demo.ts')).run(f, io),
  }),
  command({
    name: 'verify',
    summary: 'verify a live enclave (URL) with a fresh nonce; or a report, quote, GPU evidence or saved bundle',
    args: '<url>',
    flags: VERIFY_URL,
    details: `Prints the verification report, a table or JSON. ${EXIT_VERIFY}\n${CLIENT_TRUST}`,
    run: async (f, a, io) => (await import('./verify-url.ts')).run(f, a[0]!, io),
  }),
  command({
    name: 'verify snp',
    summary: 'verify an AMD SEV-SNP attestation report',
    flags: VERIFY_SNP,
    details: `Without --chain the ARK and ASK/ASVK come from the pinned trust directory (GM_TRUST_DIR, else\n~/.config/gm/trust). ${EXIT_VERIFY}`,
    run: async (f, _a, io) => (await import('./verify-snp.ts')).run(f, io),
  }),
  command({
    name: 'verify tdx',
    summary: 'verify an Intel TDX quote against the pinned Intel SGX Root CA',
    flags: VERIFY_TDX,
    details: EXIT_VERIFY,
    run: async (f, _a, io) => (await import('./verify-tdx.ts')).run(f, io),
  }),
  command({
    name: 'verify gpu',
    summary: 'verify NVIDIA GPU confidential-computing evidence, or a saved NRAS result',
    flags: VERIFY_GPU,
    details: `Give --evidence FILE, or --nras FILE --jwks FILE --issuer URL. Exit 0 all GPUs verified, 1 a GPU rejected,\n2 usage or configuration error.`,
    run: async (f, _a, io) => (await import('./verify-gpu.ts')).run(f, io),
  }),
  command({
    name: 'verify bundle',
    summary: 'verify a saved evidence bundle (CBOR or JSON) offline',
    args: '<file>',
    flags: VERIFY_BUNDLE,
    details: `${EXIT_VERIFY}\n${CLIENT_TRUST}`,
    run: async (f, a, io) => (await import('./verify-bundle.ts')).run(f, a[0]!, io),
  }),
  command({ name: 'measure', summary: 'compute the launch measurements a policy pins, from the images a TEE launches' }),
  command({
    name: 'measure snp',
    summary: 'the SEV-SNP launch digest (MEASUREMENT) from the OVMF, kernel, initrd and command line',
    flags: MEASURE_SNP,
    details: 'Measurement inputs come only from the command line (no GM_* variables). Exit 0 printed (and equal, when\ncompared), 1 different, 2 usage or input error.',
    run: async (f, _a, io) => (await import('./measure-snp.ts')).run(f, io),
  }),
  command({
    name: 'measure tdx',
    summary: 'TDX MRTD from the TDVF, and RTMRs replayed from a CCEL log with every extend explained',
    flags: MEASURE_TDX,
    details: 'Exit 0 when every comparison holds and every given input was found, 1 otherwise, 2 usage or input error.',
    run: async (f, _a, io) => (await import('./measure-tdx.ts')).run(f, io),
  }),
  command({ name: 'trust', summary: "manage the pinned vendor anchors in the trust directory (GM_TRUST_DIR, else ~/.config/gm/trust)" }),
  command({
    name: 'trust import',
    summary: 'copy pinned vendor anchors from DIR into the trust directory (offline)',
    args: '<dir>',
    flags: { json },
    run: async (f, a, io) => (await import('./trust.ts')).importDir(io, a[0]!, f),
  }),
  command({
    name: 'trust fetch',
    summary: "download the vendors' anchors into the trust directory, checking every pin",
    flags: TRUST_FETCH,
    run: async (f, _a, io) => (await import('./trust.ts')).fetchAll(io, f),
  }),
  command({
    name: 'trust list',
    summary: 'list the pinned anchors and whether the trust directory holds them',
    flags: { json },
    run: async (f, _a, io) => (await import('./trust.ts')).list(io, f),
  }),
  command({
    name: 'chat',
    summary: 'verify the enclave, send one encrypted chat request and stream the answer',
    args: '<prompt...>',
    flags: CHAT,
    env: true,
    details: `Progress and the verification summary go to stderr, the answer and its receipt to stdout.\n${CLIENT_TRUST}`,
    run: async (f, a, io) => (await import('./chat.ts')).run(f, a.join(' '), io),
  }),
  command({
    name: 'proxy',
    summary: 'verify the enclave, then serve a plain OpenAI API on loopback that seals every request to it',
    flags: PROXY,
    env: true,
    details: `Point any OpenAI client at http://127.0.0.1:8787/v1. Answers carry gm-verified and gm-receipt headers\n(trailers on streams); GET /v1/gm/receipts/{requestId} returns the signed receipt. Outbound requests honour\nHTTPS_PROXY, HTTP_PROXY and NO_PROXY. Refuses to start when the enclave does not verify (exit 1).\n${CLIENT_TRUST}`,
    run: async (f, _a, io) => (await import('./proxy.ts')).run(f, io),
  }),
  command({
    name: 'enclave',
    summary: 'run the enclave service',
    flags: ENCLAVE,
    env: true,
    run: async (f, _a, io) => (await import('../enclave/main.ts')).run(f, io),
  }),
  command({
    name: 'worker',
    summary: 'run the GPU worker agent beside an OpenAI-compatible server',
    flags: WORKER,
    env: true,
    details: 'Attests each enclave before registering with it, under --enclave-policy and the pinned vendor roots of the\ntrust directory (GM_TRUST_DIR, else ~/.config/gm/trust): with a real TEE it does not start without them.',
    run: async (f, _a, io) => (await import('../worker/main.ts')).run(f, io),
  }),
  command({
    name: 'dev-model',
    summary: 'run a small deterministic OpenAI-compatible test server',
    flags: DEV_MODEL,
    env: true,
    run: async (f, _a, io) => (await import('../worker/dev-model/main.ts')).run(f, io),
  }),
  command({
    name: 'host',
    summary: 'run the host shim: gated relay, collateral cache, status page',
    flags: HOST,
    env: true,
    details: 'Opens the relay only to an enclave whose evidence chains to the pinned vendor roots of the trust directory\n(GM_TRUST_DIR, else ~/.config/gm/trust), read at start: a certificate there that fails its pin\n(TRUST_PIN_MISMATCH) or a file that cannot be read (TRUST_DIR_UNREADABLE) stops it, and so does, without\n--allow-sim, a directory holding none (TRUST_ANCHOR_MISSING). With --allow-sim and no --policy it reads none.',
    run: async (f, _a, io) => (await import('../host/main.ts')).run(f, io),
  }),
  command({ name: 'receipts', summary: 'verify receipts and ledgers; manage accounts; statements' }),
  command({
    name: 'receipts verify',
    summary: 'verify a receipts file, or a whole ledger with --ledger',
    args: '[file]',
    flags: RECEIPTS_VERIFY,
    details: 'Checks signatures, the chain, and each price against its signed offer. Exit 0 verified, 1 rejected, 2 usage.',
    run: async (f, a, io) => (await import('./receipts-verify.ts')).run(f, a[0], io),
  }),
  command({
    name: 'receipts prove',
    summary: "check a receipt's best-execution commitment against the offer listing",
    flags: RECEIPTS_PROVE,
    details: 'Recomputes the Merkle root of the offers the enclave considered, checks the eligible set and rule against the\nreceipt, and that no eligible offer ranked above the one that served. Exit 0 proven, 1 rejected, 2 usage.',
    run: async (f, _a, io) => (await import('./receipts-prove.ts')).run(f, io),
  }),
  command({
    name: 'receipts account',
    summary: 'ledger accounts: create (prints the API key once), deposit, pay-worker',
    args: '<action>',
    flags: RECEIPTS_ACCOUNT,
    details: 'gm receipts account create --ledger PATH --credit-key-file FILE (--prepaid 5.00 | --credit-limit 100) [--currency USD]\ngm receipts account deposit --ledger PATH --credit-key-file FILE --account ID --amount 2.50\ngm receipts account pay-worker --ledger PATH --worker ID --currency USD --amount 1.00',
    run: async (f, a, io) => (await import('./receipts.ts')).runAccount(f, a[0]!, io),
  }),
  command({
    name: 'receipts statement',
    summary: 'statement of an account or a worker, CSV or JSON',
    flags: RECEIPTS_STATEMENT,
    run: async (f, _a, io) => (await import('./receipts.ts')).runStatement(f, io),
  }),
];
