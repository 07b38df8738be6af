/**
 * One GPU, one seller, through the sim stack: each worker's sim GPU has its own device certificate serial (UEID)
 * unless the test gives two workers one serial, which presents one GPU under two worker keys. The second registration
 * is refused (GPU_ALREADY_REGISTERED) while the first holder is live, and taken once it has left.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Stack, startStack } from './stack/harness.ts';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    workers: [
      { model: { name: 'm' }, gpuSerial: 0x4242n },
      { model: { name: 'm' }, gpuSerial: 0x4242n, expectRefusal: true },
      { model: { name: 'm' } },
    ],
  });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

describe('one GPU, one seller', () => {
  it('a second worker presenting a GPU a live worker holds is refused; a worker with its own GPU is not', async () => {
    expect(await stack.workers[0]!.refusal).toBeUndefined();
    expect(await stack.workers[1]!.refusal).toBe('GPU_ALREADY_REGISTERED');
    expect(await stack.workers[2]!.refusal).toBeUndefined();
    const listed = stack.enclave.registry.list();
    expect(listed.map((w) => w.id).sort()).toEqual([stack.workers[0]!.worker.id, stack.workers[2]!.worker.id].sort());
    expect(listed.find((w) => w.id === stack.workers[0]!.worker.id)!.gpuIds).toEqual(['sim:4242']);
  });

  it('once the holder has left, the GPU may register under the other worker', async () => {
    await stack.enclave.registry.remove(stack.workers[0]!.worker.id);
    await stack.workers[1]!.worker.rotateKeys(); // re-registers at once
    await vi.waitFor(() => expect(stack.enclave.registry.usable(stack.workers[1]!.worker.id)).toBeDefined(), { timeout: 20_000, interval: 50 });
  });
});
