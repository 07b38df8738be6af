/**
 * SEV-SNP certificate table, as the kernel returns it in configfs-tsm `auxblob` (GHCB spec 56421 §4.1.8.1
 * "SNP Extended Guest Request", certificate table): entries of { GUID (16 bytes, RFC 4122 byte order),
 * offset u32 LE, length u32 LE } ended by an all-zero entry; offsets count from the start of the table.
 * Returns the DER certificates leaf first ([VCEK or VLEK, ASK or ASVK, ARK]), the order the bundle uses.
 */
import { protocolError } from '../../attestation/errors.ts';

const GUIDS: Record<string, 'vcek' | 'vlek' | 'ask' | 'ark'> = {
  '63da758de6644564adc5f4b93be8accd': 'vcek',
  a8074bc2a25a483eaae639c045a0b8a1: 'vlek',
  '4ab7b379bbac4fe4a02f05aef327c782': 'ask',
  c0b406a4a803495297433fb6014cd0ae: 'ark',
};

const ORDER = ['vcek', 'vlek', 'ask', 'ark'] as const;

export function parseSnpCertTable(t: Uint8Array): Uint8Array[] {
  const dv = new DataView(t.buffer, t.byteOffset, t.byteLength);
  const found = new Map<string, Uint8Array>();
  for (let o = 0; ; o += 24) {
    if (o + 24 > t.length) throw protocolError('SNP_CERT_TABLE_MALFORMED', 'SEV-SNP certificate table has no terminating entry');
    const guid = Buffer.from(t.subarray(o, o + 16)).toString('hex');
    const off = dv.getUint32(o + 16, true);
    const len = dv.getUint32(o + 20, true);
    if (/^0+$/.test(guid) && off === 0 && len === 0) break;
    if (off > t.length || len > t.length - off) throw protocolError('SNP_CERT_TABLE_MALFORMED', 'SEV-SNP certificate table entry points outside the table');
    const kind = GUIDS[guid];
    if (!kind) continue; // other entries (e.g. a CRL or vendor data) are not certificates the chain needs
    if (found.has(kind)) throw protocolError('SNP_CERT_TABLE_MALFORMED', `SEV-SNP certificate table holds two ${kind} entries`);
    found.set(kind, t.slice(off, off + len));
  }
  return ORDER.filter((k) => found.has(k)).map((k) => found.get(k)!);
}

/** Builds a table (tests and the fake kernel). */
export function buildSnpCertTable(certs: { vcek?: Uint8Array; ask?: Uint8Array; ark?: Uint8Array }): Uint8Array {
  const entries = (Object.entries(certs) as [string, Uint8Array][]).filter(([, v]) => v);
  const head = 24 * (entries.length + 1);
  const total = head + entries.reduce((n, [, v]) => n + v.length, 0);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  let data = head;
  entries.forEach(([k, v], i) => {
    const guid = Object.entries(GUIDS).find(([, n]) => n === k)![0];
    out.set(Buffer.from(guid, 'hex'), i * 24);
    dv.setUint32(i * 24 + 16, data, true);
    dv.setUint32(i * 24 + 20, v.length, true);
    out.set(v, data);
    data += v.length;
  });
  return out;
}
