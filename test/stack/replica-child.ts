/**
 * One enclave replica as its own process (test/stack/replicas.ts, bench/scale.bench.ts): a sim enclave with the
 * market router, appending receipts to the shared ledger at argv[2] on its own chain argv[3]. Prints
 * {"url": ...} on stdout once listening, then {"cpu": microseconds} whenever it reads a line on stdin (the bench
 * measures CPU per request per replica), and runs until killed.
 */
import { createInterface } from 'node:readline';
import { createEnclave } from '../../enclave/app.ts';
import { SqliteLedger } from '../../enclave/ledger/sqlite.ts';
import { createLogger } from '../../enclave/log.ts';
import { createMarket } from '../../enclave/market/index.ts';
import { marketRouter } from '../../enclave/market/router.ts';
import { generateEnclaveKeys } from '../../enclave/keys.ts';
import { serve } from '../../enclave/serve.ts';
import { SIM_MEASUREMENT, simProvider } from '../../enclave/tee/sim.ts';
import { DEFAULT_POLICY } from '../../attestation/sevsnp/index.ts';

const [ledgerPath, chainId] = process.argv.slice(2) as [string, string];
const log = createLogger({ service: `replica-${chainId}`, sim: true, level: 'error', sink: (l) => void process.stderr.write(l) });
const keys = await generateEnclaveKeys();
const ledger = SqliteLedger.open(ledgerPath, { signer: keys.receipt, chainId });
const market = marketRouter({ market: createMarket({}), ledger, enclaveSim: true, log, headEveryMs: 0 });
const enclave = await createEnclave({
  tee: simProvider(),
  log,
  keys,
  router: market.router,
  onWorkerChange: market.onWorkerChange,
  market: market.surface,
  settings: { openAccess: false, ledger: 'file' },
  workerPolicy: { policy: { 'sev-snp': { ...DEFAULT_POLICY, measurements: [SIM_MEASUREMENT] } }, allowSim: true, freshnessMs: 10 * 60_000 },
  limits: { maxConcurrentStreams: 4096 },
});
const served = await serve({ fetch: enclave.app.fetch });
process.stdout.write(`${JSON.stringify({ url: served.url })}\n`);
createInterface({ input: process.stdin }).on('line', () => {
  const u = process.cpuUsage();
  process.stdout.write(`${JSON.stringify({ cpu: u.user + u.system })}\n`);
});
process.stdin.on('end', () => process.exit(0));
