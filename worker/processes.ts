/**
 * The two sides of `gm worker --processes N` (worker/cluster.ts has the channel between them): the primary's keys and
 * process group as the agent sees them (`ServedElsewhere`), and a serving process (gateway, session path, forwarder
 * to the upstream) built from what the primary gave it.
 */
import { sha256 } from '../attestation/bytes.ts';
import { type GatewayMaterial, gatewayKeysFrom, newGatewayMaterial } from '../enclave/cluster.ts';
import { type Logger, createLogger } from '../enclave/log.ts';
import { onSignal, serveHanded, type ServiceIo } from '../enclave/serve.ts';
import type { GpuEvidenceSource } from '../enclave/tee/evidence.ts';
import type { TeeProvider } from '../enclave/tee/provider.ts';
import { setDefaultBackend } from '../protocol/backend.ts';
import { nodeBackend } from '../protocol/node/backend-node.ts';
import { generateWorkerKey } from '../protocol/offer.ts';
import { keepSessionConnections, type ServedElsewhere } from './agent.ts';
import { createWorkerApp, type ServingKeys, type WorkerKeys, workerIdFor } from './app.ts';
import { processLink, startWorkerProcesses } from './cluster.ts';
import { createForwarder } from './forward.ts';

export interface PrimaryStart {
  readonly processes: number;
  /** host:port, :port or port: where the primary listens (it hands each connection to a process). */
  readonly listen?: string;
  readonly log: Logger;
  readonly tee: TeeProvider;
  readonly gpu: GpuEvidenceSource;
}

/**
 * Makes the worker's keys once (gateway material for every process, the signing key for the primary alone), starts
 * the processes and resolves when all serve. Rotation makes the next material (ids distinct from the two held) and
 * pushes it to every process before the agent attests and registers it.
 */
export async function startPrimary(o: PrimaryStart): Promise<{ readonly keys: WorkerKeys; readonly elsewhere: ServedElsewhere }> {
  setDefaultBackend(nodeBackend);
  let material: GatewayMaterial = newGatewayMaterial();
  let previousIds: number[] = [];
  const signing = await generateWorkerKey();
  const keys: WorkerKeys = { ...(await gatewayKeysFrom(material)), signing, workerId: workerIdFor(await sha256(signing.publicKey)) };
  const group = await startWorkerProcesses({ processes: o.processes, ...(o.listen ? { listen: o.listen } : {}), log: o.log, tee: o.tee, gpu: o.gpu, workerId: keys.workerId, signingKey: signing.publicKey, gateway: material });
  o.log.info('worker.processes', { processes: o.processes });
  return {
    keys,
    elsewhere: {
      url: group.url,
      push: (s) => group.push(s),
      close: () => group.close(),
      async nextKeys() {
        const ids = material.keys.map((k) => k.keyId);
        material = newGatewayMaterial([...ids, ...previousIds], material.keys.map((k) => k.kemId));
        previousIds = ids;
        await group.push({ rotate: material });
        return gatewayKeysFrom(material);
      },
    },
  };
}

export interface ProcessFlags {
  readonly upstream: string;
  readonly logLevel?: string | undefined;
  readonly maxStreams?: number | undefined;
}

/** A serving process: runs until SIGTERM (from its primary) or until the primary goes away (node:cluster exits it). */
export async function serveWorkerProcess(f: ProcessFlags, io: ServiceIo): Promise<number> {
  setDefaultBackend(nodeBackend);
  const link = await processLink();
  const st = link.start;
  const log = createLogger({ service: 'worker', sim: st.sim, level: (f.logLevel ?? 'info') as 'info', sink: (l) => io.err(l) }).child({ process: st.instance });
  const current = await gatewayKeysFrom(st.gateway);
  // A replacement starts where the others are: the previous keys still accepted, the current ones served.
  const first = st.previous ? await gatewayKeysFrom(st.previous) : current;
  const keys: ServingKeys = { ...first, signing: { publicKey: st.signingKey }, workerId: st.workerId };
  let manifest = st.manifest;
  const fwd = createForwarder({ upstream: f.upstream });
  const wapp = createWorkerApp({
    keys, manifest: () => manifest, tee: link.tee, gpu: link.gpu, handler: (r) => fwd.handle(r), forward: fwd.forward, log, ohttpHop: false, instance: st.instance,
    ...(f.maxStreams ? { maxConcurrentStreams: f.maxStreams } : {}),
  });
  if (st.previous) await wapp.rotateKeys(current);
  for (const [enclave, sealed] of st.credentials) await wapp.acceptCredential(enclave, sealed);
  // It listens on nothing: the primary hands it connections (enclave/handoff.ts) once it says it serves.
  const served = serveHanded({ fetch: wapp.app.fetch, direct: wapp.direct });
  keepSessionConnections(served);
  link.serve(async (s) => {
    if ('rotate' in s) await wapp.rotateKeys(await gatewayKeysFrom(s.rotate));
    else if ('manifest' in s) manifest = s.manifest;
    else await wapp.acceptCredential(s.credential[0], s.credential[1]);
  }, log);
  link.ready(served);
  await onSignal(async () => {
    await served.close(500);
    await fwd.close();
    link.close();
  });
  return 0;
}
