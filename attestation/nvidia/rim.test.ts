import { describe, expect, it } from 'vitest';
import { isGmError } from '../errors.ts';
import { hasVectors, trustStore, vectorText } from '../../test/vectors.ts';
import { gpuEvidenceFromRaw, verifyGpuEvidence } from './index.ts';
import { compareWithRims, parseRim, verifyRimSignature } from './rim.ts';
import { buildSimGpuReport, createNvidiaSimSigner, createSimRimSigner } from './sim.ts';
import { parseGpuAttestationReport } from './spdm.ts';
import { c14n11, parseXml } from './xml.ts';

/** Inside the sample RIMs' signer validity (2023-06-23 .. 2025-06-22). */
const NOW = new Date('2024-06-01T00:00:00Z');

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    if (isGmError(e)) return e.code;
    throw e;
  }
  return undefined;
}

describe('Canonical XML 1.1', () => {
  it('sorts attributes and namespaces, expands empty elements, escapes, renders inherited namespaces at the apex', () => {
    const doc = parseXml('<?xml version="1.0"?>\n<a xmlns="urn:d" xmlns:p="urn:p" z="1" p:y="&quot;2&#x9;" b="&lt;" q="l\tt"><!-- c --><p:b/>t&gt;<c><![CDATA[x&y]]></c></a>\n');
    expect(c14n11(doc)).toBe('<a xmlns="urn:d" xmlns:p="urn:p" b="&lt;" q="l t" z="1" p:y="&quot;2&#x9;"><p:b></p:b>t&gt;<c>x&amp;y</c></a>');
    const c = doc.children.find((n) => n.kind === 'element' && n.local === 'c');
    expect(c14n11(c as never)).toBe('<c xmlns="urn:d" xmlns:p="urn:p">x&amp;y</c>');
  });
  it('refuses DTDs, undeclared prefixes and mismatched tags', async () => {
    expect(await codeOf(() => parseXml('<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'))).toBe('XML_INVALID');
    expect(await codeOf(() => parseXml('<q:a/>'))).toBe('XML_INVALID');
    expect(await codeOf(() => parseXml('<a><b></a></b>'))).toBe('XML_INVALID');
    expect(await codeOf(() => parseXml('<a/><b/>'))).toBe('XML_INVALID');
  });
});

describe.skipIf(!hasVectors)('NVIDIA RIMs (real)', () => {
  const vbiosXml = vectorText('nvidia/nvtrust/1010_0200_882_96005E0001_PROD.swidtag');
  const driverXml = vectorText('nvidia/nvtrust/Driver_RIM_test_no_gpu.swidtag');

  it('parse: kind, version, active measurements with alternatives', () => {
    const v = parseRim(vbiosXml);
    expect([v.kind, v.version]).toEqual(['vbios', '96.00.5E.00.01']);
    expect(v.measurements.filter((m) => m.active)).toHaveLength(12);
    const d = parseRim(driverXml);
    expect([d.kind, d.version]).toEqual(['driver', '545.00']);
  });

  it('the three sample RIMs verify (XML-DSig + chain) to the pinned NVIDIA RIM root', async () => {
    const root = (await trustStore()).get('nvidia-rim-root');
    for (const f of ['1010_0200_882_96005E0001_PROD.swidtag', '1010_0200_882_96005E0001_test_no_gpu.swidtag', 'Driver_RIM_test_no_gpu.swidtag']) {
      const r = await verifyRimSignature(parseRim(vectorText(`nvidia/nvtrust/${f}`)), [root], NOW);
      expect(r.chain.root.subject.text).toBe('C=US, O=NVIDIA, CN=NVIDIA CoRIM signing Root CA');
    }
  });

  it('tampering: a hash, the signature value, the algorithm, the root and the clock each give their code', async () => {
    const root = (await trustStore()).get('nvidia-rim-root');
    const verify = (xml: string, roots = [root], now = NOW) => verifyRimSignature(parseRim(xml), roots, now);
    const hash = /ns2:Hash0="c3f6/;
    expect(await codeOf(verify(vbiosXml.replace(hash, 'ns2:Hash0="d3f6')))).toBe('NVIDIA_RIM_DIGEST');
    expect(await codeOf(verify(vbiosXml.replace('<ds:SignatureValue>s5JY', '<ds:SignatureValue>t5JY')))).toBe('NVIDIA_RIM_SIGNATURE');
    expect(await codeOf(verify(vbiosXml.replace('xmldsig-more#ecdsa-sha384', 'xmldsig-more#ecdsa-sha256')))).toBe('NVIDIA_RIM_ALGORITHM');
    expect(await codeOf(verify(vbiosXml, [(await createSimRimSigner(NOW)).root]))).toBe('NVIDIA_RIM_UNTRUSTED_ROOT');
    expect(await codeOf(verify(vbiosXml, [root], new Date('2026-01-01T00:00:00Z')))).toBe('CERT_EXPIRED');
  });

  it('driver and VBIOS RIMs do not claim the same index', () => {
    const d = parseRim(driverXml).measurements.filter((m) => m.active).map((m) => m.index);
    const v = parseRim(vbiosXml).measurements.filter((m) => m.active).map((m) => m.index);
    expect(d.filter((i) => v.includes(i))).toEqual([]);
  });

  it('a report with the RIMs\' golden values matches; each changed index is reported', async () => {
    const driver = parseRim(driverXml);
    const vbios = parseRim(vbiosXml);
    const signer = await createNvidiaSimSigner({ now: NOW });
    const measurements: Record<number, Uint8Array> = {};
    for (const m of [...driver.measurements, ...vbios.measurements]) if (m.active) measurements[m.index + 1] = m.alternatives[0]!;
    const report = (extra: Record<number, Uint8Array> = {}) => buildSimGpuReport(signer, { driverVersion: '545.00', vbiosVersion: '96.00.5E.00.01', measurements: { ...measurements, ...extra } });
    expect(compareWithRims(parseGpuAttestationReport(await report()), driver, vbios).mismatches).toEqual([]);
    const bad = compareWithRims(parseGpuAttestationReport(await report({ 4: new Uint8Array(48), 10: new Uint8Array(48).fill(1) })), driver, vbios);
    expect(bad.mismatches.map((m) => [m.block, m.rimIndex])).toEqual([[4, 3], [10, 9]]);
    const other = parseGpuAttestationReport(await buildSimGpuReport(signer, { driverVersion: '550.90.07', vbiosVersion: '96.00.5E.00.01' }));
    expect(await codeOf(() => compareWithRims(other, driver, vbios))).toBe('NVIDIA_RIM_VERSION_MISMATCH');
    expect(await codeOf(() => compareWithRims(parseGpuAttestationReport(new Uint8Array(0)), driver, vbios))).toBe('NVIDIA_SPDM_TRUNCATED');
  });

  it('any listed alternative of a multi-valued index matches; a value listed nowhere is reported', async () => {
    const driver = parseRim(driverXml);
    const vbios = parseRim(vbiosXml);
    const active = [...driver.measurements, ...vbios.measurements].filter((m) => m.active);
    const multi = active.filter((m) => m.alternatives.length > 1 && m.index !== 35); // index 35 counts only with NVDEC0 enabled
    // The real RIMs list 4 alternatives for VBIOS index 12 and 2 for driver indices 23 and 24.
    expect(multi.map((m) => [m.index, m.alternatives.length])).toEqual([[23, 2], [24, 2], [12, 4]]);
    const signer = await createNvidiaSimSigner({ now: NOW });
    const last: Record<number, Uint8Array> = {};
    for (const m of active) last[m.index + 1] = m.alternatives[m.alternatives.length - 1]!;
    const report = (extra: Record<number, Uint8Array> = {}) => buildSimGpuReport(signer, { driverVersion: '545.00', vbiosVersion: '96.00.5E.00.01', measurements: { ...last, ...extra } });
    const ok = compareWithRims(parseGpuAttestationReport(await report()), driver, vbios);
    expect(ok.mismatches).toEqual([]);
    for (const m of multi) expect(ok.matched).toContain(m.index + 1);
    // A value that is an alternative of another index is not accepted for this one.
    const bad = compareWithRims(parseGpuAttestationReport(await report({ 13: multi[0]!.alternatives[0]! })), driver, vbios);
    expect(bad.mismatches.map((m) => m.block)).toEqual([13]);
  });

  it('end to end: real RIMs (pinned RIM root) against a sim GPU carrying their golden values', async () => {
    const driver = parseRim(driverXml);
    const vbios = parseRim(vbiosXml);
    const signer = await createNvidiaSimSigner({ now: NOW });
    const measurements: Record<number, Uint8Array> = {};
    for (const m of [...driver.measurements, ...vbios.measurements]) if (m.active) measurements[m.index + 1] = m.alternatives[0]!;
    measurements[11] = new Uint8Array(48).fill(2);
    const raw = await buildSimGpuReport(signer, { driverVersion: '545.00', vbiosVersion: '96.00.5E.00.01', measurements });
    const e = await verifyGpuEvidence([gpuEvidenceFromRaw(raw, signer.chainPem)], {
      now: NOW, roots: { device: [signer.root], rim: [(await trustStore()).get('nvidia-rim-root')] }, sim: true, expectedNonce: new Uint8Array(32), rims: [driverXml, vbiosXml], policy: null,
    }).catch((x: unknown) => x);
    expect(isGmError(e, 'NVIDIA_RIM_MISMATCH')).toBe(true);
    const rows = (e as { report: { checks: { id: string; status: string }[] } }).report.checks;
    expect(rows.filter((r) => r.status === 'pass').map((r) => r.id)).toContain('gpu0.nvidia.rim.vbios.signature');
    expect(rows.filter((r) => r.status === 'fail').map((r) => r.id)).toEqual(['gpu0.nvidia.rim.measurement.11']);
  });
});
