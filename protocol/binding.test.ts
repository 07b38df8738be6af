import { describe, expect, it } from 'vitest';
import { fromHex, hex } from '../attestation/bytes.ts';
import { BOOT_NONCE, gpuNonceFor, reportData, reportDataPreimage } from './binding.ts';
import { decodeKeyConfig, encodeKeyConfigs } from './ohttp.ts';

// The worked example of docs/protocol.md §7.1. Expected values were computed with xxd + sha256sum/sha512sum
// (the shell commands are in the doc), not with this module.
const KEY_CONFIG = '01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003';
const KEY_CONFIGS = '002d' + KEY_CONFIG;
const NONCE = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const SIGNING_KEY = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const PREIMAGE =
  '19676d2f7631207265706f72742d6461746120656e636c617665' + '0001' + NONCE +
  '7590e2c7ed604a2550cf6a4df29a54a8c3613abf771ec49dd4ece8eff5ee9f2a' + '0020' + SIGNING_KEY;
const REPORT_DATA =
  '3d80083434f0e5088cc70ca0d7c801e63a2d5a540d2379b6bda866e82bb281618bce8684bccf590c207ec874b9f1c305f71e39e116fe878f6004b5367e167728';
const GPU_NONCE = '18997b5719a07765f06dfbdc770a26b49a19ec4bfd8e1726c84069c458ca188e';
const WORKER_BOOT_REPORT_DATA =
  'a513b9d390c88ec8a02662bbe3e76ae0f92fe81ad74317ab849572a166e8597e5db742b8510dba3a2594c13ca6cc908a6ee7dec444b996f4c1caa1b4122edb03';

describe('REPORT_DATA binding (docs/protocol.md §7)', () => {
  const input = { role: 'enclave' as const, nonce: fromHex(NONCE), keyConfigs: fromHex(KEY_CONFIGS), signingKey: fromHex(SIGNING_KEY) };

  it('the example key configs are the RFC 9458 Appendix A configuration as application/ohttp-keys', () => {
    expect(hex(encodeKeyConfigs([decodeKeyConfig(fromHex(KEY_CONFIG))]))).toBe(KEY_CONFIGS);
  });

  it('reproduces the worked example byte for byte', async () => {
    expect(hex(await reportDataPreimage(input))).toBe(PREIMAGE);
    expect(hex(await reportData(input))).toBe(REPORT_DATA);
    expect(hex(await gpuNonceFor(fromHex(REPORT_DATA)))).toBe(GPU_NONCE);
    expect(hex(await reportData({ ...input, role: 'worker', nonce: BOOT_NONCE }))).toBe(WORKER_BOOT_REPORT_DATA);
  });

  it('every input changes the result (role, version, nonce, key configs, signing key)', async () => {
    const base = hex(await reportData(input));
    const variants = [
      { ...input, role: 'worker' as const },
      { ...input, version: 2 },
      { ...input, nonce: BOOT_NONCE },
      { ...input, keyConfigs: fromHex(KEY_CONFIGS + '00') },
      { ...input, signingKey: fromHex(SIGNING_KEY + '00') },
    ];
    const seen = new Set([base]);
    for (const v of variants) seen.add(hex(await reportData(v)));
    expect(seen.size).toBe(variants.length + 1);
  });

  it("an enclave's settings extend the preimage by their digest and change REPORT_DATA; a worker binds none", async () => {
    const settings = new Uint8Array([0xa1, 0x61, 0x61, 0xf5]);
    const pre = await reportDataPreimage({ ...input, settings });
    expect(hex(pre.subarray(0, pre.length - 32))).toBe(PREIMAGE);
    expect(pre.subarray(pre.length - 32)).toEqual(new Uint8Array(await crypto.subtle.digest('SHA-256', settings)));
    expect(hex(await reportData({ ...input, settings }))).not.toBe(REPORT_DATA);
    expect(hex(await reportData({ ...input, settings: new Uint8Array([0xa1, 0x61, 0x61, 0xf4]) }))).not.toBe(hex(await reportData({ ...input, settings })));
    await expect(reportData({ ...input, role: 'worker', settings })).rejects.toMatchObject({ code: 'BINDING_BAD_INPUT' });
  });

  it("a worker's model manifest extends its preimage by the manifest digest and changes REPORT_DATA; an enclave binds none", async () => {
    const worker = { ...input, role: 'worker' as const, nonce: BOOT_NONCE };
    const models = new Uint8Array([0xa1, 0x61, 0x76, 0x01]);
    const plain = await reportDataPreimage(worker);
    const pre = await reportDataPreimage({ ...worker, models });
    expect(hex(pre.subarray(0, pre.length - 32))).toBe(hex(plain));
    expect(pre.subarray(pre.length - 32)).toEqual(new Uint8Array(await crypto.subtle.digest('SHA-256', models)));
    expect(hex(await reportData({ ...worker, models }))).not.toBe(WORKER_BOOT_REPORT_DATA);
    expect(hex(await reportData({ ...worker, models: new Uint8Array([0xa1, 0x61, 0x76, 0x02]) }))).not.toBe(hex(await reportData({ ...worker, models })));
    await expect(reportData({ ...input, models })).rejects.toMatchObject({ code: 'BINDING_BAD_INPUT' });
  });

  it('rejects malformed inputs', async () => {
    await expect(reportData({ ...input, nonce: new Uint8Array(31) })).rejects.toMatchObject({ code: 'BINDING_BAD_INPUT' });
    await expect(reportData({ ...input, signingKey: new Uint8Array() })).rejects.toMatchObject({ code: 'BINDING_BAD_INPUT' });
    await expect(reportData({ ...input, role: 'relay' as 'worker' })).rejects.toMatchObject({ code: 'BINDING_BAD_INPUT' });
    await expect(gpuNonceFor(new Uint8Array(32))).rejects.toMatchObject({ code: 'BINDING_BAD_INPUT' });
  });
});
