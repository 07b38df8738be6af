/**
 * The whole gm stack on loopback in sim mode, in process (used by the stack, client and market
 * tests and by bench/routing.bench.ts): one enclave, N dev-models and N workers in front of them, each on
 * an ephemeral port, registered and verified before `startStack` resolves. Logs go to memory so tests can search
 * them. `stop()` closes every server and timer.
 */
import { DEFAULT_POLICY, type SnpPolicy } from '../../attestation/sevsnp/index.ts';
import { createSimAmd, type SimAmd } from '../../attestation/sevsnp/sim.ts';
import { buildSimGpuReport, createNvidiaSimSigner, type NvidiaSimSigner, simGpuDevice } from '../../attestation/nvidia/sim.ts';
import type { GpuCollateral, GpuPolicy } from '../../attestation/nvidia/index.ts';
import type { GpuEvidenceSource } from '../../enclave/tee/evidence.ts';
import type { WorkerPolicy } from '../../enclave/workers/registry.ts';
import { createEnclave, type Enclave, type EnclaveOptions } from '../../enclave/app.ts';
import { generateEnclaveKeys } from '../../enclave/keys.ts';
import { SqliteLedger } from '../../enclave/ledger/sqlite.ts';
import { createMarket, type Market } from '../../enclave/market/index.ts';
import { marketRouter } from '../../enclave/market/router.ts';
import { offerSigner } from '../../worker/offers.ts';
import { createLogger, type Logger } from '../../enclave/log.ts';
import { serve, type Served } from '../../enclave/serve.ts';
import { SIM_MEASUREMENT, simProvider, type SimProviderOptions } from '../../enclave/tee/sim.ts';
import { startWorker, type RunningWorker } from '../../worker/agent.ts';
import { generateWorkerKeys } from '../../worker/app.ts';
import { devModelApp, type DevModelOptions } from '../../worker/dev-model/server.ts';
import { simGpuSource, type SimGpuOptions } from '../../worker/gpu.ts';
import type { ModelIdentity } from '../../protocol/model-identity.ts';

export interface StackWorkerOptions {
  readonly model?: DevModelOptions;
  /** Use this already running OpenAI-compatible server instead of an in-process dev-model (its name in `model.name`). */
  readonly upstream?: string;
  /** SEV-SNP report fields of this worker's sim CPU evidence (e.g. a disallowed measurement). */
  readonly report?: SimProviderOptions['report'];
  readonly gpu?: Omit<SimGpuOptions, 'signer'>;
  /** Measurement block index (1-based) → value in this worker's sim GPU report (others keep the sim defaults). */
  readonly gpuMeasurements?: Readonly<Record<number, Uint8Array>>;
  /** Do not wait for this worker's registration to succeed (it is expected to be refused). */
  readonly expectRefusal?: boolean;
  /** This worker's signed offer terms (market router); default 100000 / 200000 micro-USD per M tokens. */
  readonly offer?: { readonly pricePerMInput?: bigint; readonly pricePerMOutput?: bigint; readonly ttftMs?: number };
  /** This worker's sim GPU serial (UEID); two workers given one serial present one GPU twice. Default: its own. */
  readonly gpuSerial?: bigint | 'signer';
  /** The model identity this worker states in its evidence (model manifest) and its offers. */
  readonly identity?: ModelIdentity;
  /** An identity its offers state instead of `identity` (a worker claiming what its evidence does not say). */
  readonly offerIdentity?: ModelIdentity;
}

export interface StackOptions {
  /** One entry per worker (each with its own dev-model); default two plain workers. */
  readonly workers?: readonly StackWorkerOptions[];
  readonly enclave?: Partial<Pick<EnclaveOptions, 'limits' | 'timeouts' | 'router' | 'onWorkerChange' | 'operatorToken' | 'dispatchSummary'>>;
  /** Worker policy: SEV-SNP policy (default: the sim measurement only, debug forbidden). */
  readonly snpPolicy?: SnpPolicy;
  readonly freshnessMs?: number;
  /** Worker policy: GPU policy (default: DEFAULT_WORKER_GPU_POLICY). */
  readonly gpuPolicy?: GpuPolicy;
  /** GPU collateral for worker verification (what `gm enclave --collateral` wires: OCSP and RIMs from a host shim). */
  readonly gpuCollateral?: GpuCollateral;
  /** Sim NVIDIA RIM roots (DER) sim GPUs' RIMs must chain to. */
  readonly simRimRoots?: readonly Uint8Array[];
  /** Keep log lines in memory (default true); else write them to stderr. */
  readonly captureLogs?: boolean;
  /**
   * `market` (default): the market routes by the workers' signed offers and signs receipts into an in-memory ledger,
   * requests without an API key charged to a house account; `first`: the first verified worker serving the model.
   */
  readonly router?: 'market' | 'first';
  /** The market router's ledger file (default in memory); the crash test reopens it after killing the process. */
  readonly ledgerPath?: string;
  /** The market router's abandon period (default 15 minutes). */
  readonly abandonAfterMs?: number;
  /** KEMs of the enclave's and workers' OHTTP key configurations (default enclave/keys.ts GATEWAY_KEMS). */
  readonly kems?: readonly number[];
}

export interface StackWorker {
  readonly worker: RunningWorker;
  /** The in-process dev-model (absent when the worker fronts an external `upstream`). */
  readonly model: Served | undefined;
  readonly modelName: string;
  /** Requests that could carry plaintext (POST /v1/ohttp, /v1/session/request) seen at the worker's socket. */
  readonly requestsAtSocket: () => number;
  /** Registration outcome: undefined = verified, else the refusal code. */
  readonly refusal: Promise<string | undefined>;
}

export interface Stack {
  readonly enclave: Enclave;
  readonly enclaveUrl: string;
  readonly enclaveServer: Served;
  readonly workers: readonly StackWorker[];
  /** Every log line (enclave and workers), for leak searches. */
  readonly logs: string[];
  readonly log: Logger;
  readonly amd: SimAmd;
  /** The ledger and the market (market router only). */
  readonly ledger: SqliteLedger | undefined;
  readonly market: Market | undefined;
  stop(): Promise<void>;
}

let shared: Promise<{ amd: SimAmd; nvidia: NvidiaSimSigner }> | undefined;
/** One fake AMD and one fake NVIDIA for the whole test process (key generation is the slow part). */
export function simVendors(): Promise<{ amd: SimAmd; nvidia: NvidiaSimSigner }> {
  shared ??= (async () => ({ amd: await createSimAmd({ product: 'Genoa' }), nvidia: await createNvidiaSimSigner({ now: new Date() }) }))();
  return shared;
}

export const simWorkerPolicy = (): SnpPolicy => ({ ...DEFAULT_POLICY, measurements: [SIM_MEASUREMENT] });

export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const { amd, nvidia } = await simVendors();
  const logs: string[] = [];
  const capture = o.captureLogs ?? true;
  const sink = capture ? (l: string) => void logs.push(l) : (l: string) => void process.stderr.write(l);
  const log = (service: string) => createLogger({ service, sim: true, sink, level: 'debug' });
  const keys = await generateEnclaveKeys(undefined, o.kems);
  let ledger: SqliteLedger | undefined;
  let market: ReturnType<typeof marketRouter> | undefined;
  let book: Market | undefined;
  if ((o.router ?? 'market') === 'market') {
    ledger = SqliteLedger.open(o.ledgerPath ?? ':memory:', { signer: keys.receipt });
    const house = (await ledger.createAccount({ currency: 'USD', creditLimit: 1_000_000_000_000n }, Date.now())).account;
    book = createMarket({});
    market = marketRouter({ market: book, ledger, enclaveSim: true, anonymous: house, log: log('market'), ...(o.abandonAfterMs !== undefined ? { abandonAfterMs: o.abandonAfterMs } : {}) });
  }
  const workerPolicy: WorkerPolicy = {
    policy: { 'sev-snp': o.snpPolicy ?? simWorkerPolicy(), ...(o.gpuPolicy ? { gpu: o.gpuPolicy } : {}) }, allowSim: true, freshnessMs: o.freshnessMs ?? 10 * 60_000,
    ...(o.gpuCollateral ? { gpuCollateral: o.gpuCollateral } : {}), ...(o.simRimRoots ? { simRimRoots: o.simRimRoots } : {}),
  };
  const enclave = await createEnclave({
    tee: simProvider({ amd }),
    log: log('enclave'),
    keys,
    ...(market ? { router: market.router, onWorkerChange: market.onWorkerChange, market: market.surface, settings: { openAccess: true, ledger: o.ledgerPath ? 'file' : 'memory' } } : {}),
    workerPolicy,
    ...o.enclave,
  });
  const enclaveServer = await serve({ fetch: enclave.app.fetch, direct: enclave.direct });
  const specs = o.workers ?? [{}, {}];
  const workers: StackWorker[] = [];
  try {
    for (const [i, spec] of specs.entries()) {
      const modelName = spec.model?.name ?? `gm-dev-${i + 1}`;
      const model = spec.upstream ? undefined : await serve({ fetch: devModelApp({ ...spec.model, name: modelName }).fetch });
      const worker = await startWorker({
        ...(o.kems ? { keys: await generateWorkerKeys(o.kems) } : {}),
        upstream: spec.upstream ?? model!.url,
        enclaves: [enclaveServer.url],
        tee: simProvider({ amd, ...(spec.report ? { report: spec.report } : {}) }),
        gpu: spec.gpuMeasurements ? measuredGpu(nvidia, spec.gpuMeasurements, { ...spec.gpu, ...(spec.gpuSerial !== undefined ? { serial: spec.gpuSerial } : {}) }) : simGpuSource({ signer: nvidia, ...spec.gpu, ...(spec.gpuSerial !== undefined ? { serial: spec.gpuSerial } : {}) }),
        log: log(`worker-${i + 1}`),
        fetch,
        now: () => new Date(),
        ...(spec.identity ? { identity: () => spec.identity } : {}),
        offers: offerSigner({
          ...(spec.offerIdentity ?? spec.identity ? { identity: () => spec.offerIdentity ?? spec.identity } : {}),
          currency: 'USD', pricePerMInput: spec.offer?.pricePerMInput ?? 100_000n, pricePerMOutput: spec.offer?.pricePerMOutput ?? 200_000n, terms: { kind: 'per-request' },
          capacity: 64, ttftMs: spec.offer?.ttftMs ?? 500, tokensPerSecond: 50, hotkeySeed: new Uint8Array(32).fill(i + 1),
        }),
      });
      let count = 0;
      // Count what could carry plaintext: gateway posts at the worker's socket.
      worker.served.server.on('request', (req: { method?: string; url?: string }) => {
        if (req.method === 'POST' && (req.url === '/v1/ohttp' || req.url === '/v1/session/request')) count++;
      });
      const refusal = worker.registered.then(
        () => undefined,
        (e: { code?: string }) => e.code ?? 'UNKNOWN',
      );
      if (!spec.expectRefusal) {
        const r = await refusal;
        if (r) throw new Error(`stack: worker ${i + 1} was refused (${r})`);
      } else await refusal;
      workers.push({ worker, model, modelName, requestsAtSocket: () => count, refusal });
    }
  } catch (e) {
    await Promise.all(workers.map(async (w) => (await w.worker.stop(), await w.model?.close(100))));
    await enclave.close();
    await enclaveServer.close(100);
    ledger?.close();
    throw e;
  }
  return {
    enclave,
    enclaveUrl: enclaveServer.url,
    enclaveServer,
    workers,
    logs,
    log: log('test'),
    amd,
    ledger,
    market: book,
    async stop() {
      await Promise.all(workers.map((w) => w.worker.stop()));
      await enclave.close();
      await enclaveServer.close(200);
      await Promise.all(workers.map((w) => w.model?.close(200)));
      ledger?.close();
    },
  };
}

/** A sim GPU like worker/gpu.ts simGpuSource whose report carries the given measurement blocks. */
function measuredGpu(base: NvidiaSimSigner, measurements: Readonly<Record<number, Uint8Array>>, o: Omit<SimGpuOptions, 'signer'> = {}): GpuEvidenceSource {
  const device = o.serial === 'signer' ? Promise.resolve(base) : simGpuDevice(base, o.serial ?? BigInt(++measuredDevices));
  return async (nonce) => {
    const signer = await device;
    return [{
      arch: 'HOPPER', evidence: await buildSimGpuReport(signer, { nonce: o.nonceOverride ?? nonce, measurements }),
      certs: [signer.leaf.der, signer.intermediate.der, signer.root.der], ccMode: o.ccMode ?? 'on',
    }];
  };
}

/** Serials of the measured sim GPUs (each its own GPU; small numbers, far from simGpuSource's random 63-bit ones). */
let measuredDevices = 0;
