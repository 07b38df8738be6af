/**
 * Receipts the enclave returns inside the encrypted response (docs/design.md §6): for streams a final SSE event
 * `gm.receipt`, otherwise the `gm-receipt` trailer (or header). Each is verified against the receipt key bound in
 * the attested REPORT_DATA before it is kept; the SSE event is removed from the stream the application reads, so an
 * unmodified OpenAI client never sees it.
 */
import { protocolError } from '../attestation/errors.ts';
import { StreamChain, type StreamCommitment } from '../protocol/stream-chain.ts';
import { parseReceiptEnvelope, parseReceiptHeader, RECEIPT_SSE_EVENT, receiptView, type SignedReceipt, verifyReceipt } from '../protocol/receipt.ts';

export interface ClientReceipt {
  /** The signed receipt bytes (verifiable again by anyone with the enclave's receipt key). */
  readonly signed: Uint8Array;
  /** The signed offer it cites, when the enclave attached it. */
  readonly offer?: Uint8Array;
  readonly receipt: SignedReceipt['receipt'];
  /** SHA-256 of the receipt bytes: what the enclave's next receipt holds as `prev`. */
  readonly hash: Uint8Array;
  /** JSON-safe view for printing. */
  readonly view: Record<string, unknown>;
}

export async function acceptReceipt(envelope: unknown, receiptKey: Uint8Array): Promise<ClientReceipt> {
  const { signed, offer } = parseReceiptEnvelope(envelope);
  const v = await verifyReceipt(signed, receiptKey);
  return { signed, ...(offer ? { offer } : {}), receipt: v.receipt, hash: v.hash, view: receiptView(v.receipt) };
}

/** The receipt carried in a `gm-receipt` header or trailer: base64url of the JSON envelope (or the JSON itself). */
export async function receiptFromField(value: string, receiptKey: Uint8Array): Promise<ClientReceipt> {
  const t = value.trim();
  if (t.startsWith('{')) {
    let env: unknown;
    try {
      env = JSON.parse(t);
    } catch (e) {
      throw protocolError('RECEIPT_MALFORMED', 'gm-receipt field is not valid JSON', { cause: e });
    }
    return acceptReceipt(env, receiptKey);
  }
  const { signed, offer } = parseReceiptHeader(t);
  const v = await verifyReceipt(signed, receiptKey);
  return { signed, ...(offer ? { offer } : {}), receipt: v.receipt, hash: v.hash, view: receiptView(v.receipt) };
}

/**
 * An SSE pass-through (text/event-stream, WHATWG HTML §9.2) that forwards each event as soon as it is complete and
 * removes `gm.receipt` events, handing their data to `onReceipt` with the stream commitment over every event
 * forwarded before it (protocol/stream-chain.ts), which the receipt must commit to. A receipt that fails
 * verification errors the stream: the application learns that the enclave's accounting could not be checked.
 */
export function stripReceiptEvents(onReceipt: (data: string, received: StreamCommitment) => Promise<void>): TransformStream<Uint8Array, Uint8Array> {
  const chain = new StreamChain();
  const dec = new TextDecoder();
  const enc = new TextEncoder();
  let buf = '';
  const flushEvents = async (ctl: TransformStreamDefaultController<Uint8Array>, final: boolean): Promise<void> => {
    for (;;) {
      const m = /\r\n\r\n|\n\n|\r\r/.exec(buf);
      if (!m) break;
      const block = buf.slice(0, m.index + m[0].length);
      buf = buf.slice(m.index + m[0].length);
      await emit(block, ctl);
    }
    if (final && buf.length > 0) {
      const rest = buf;
      buf = '';
      await emit(rest, ctl);
    }
  };
  const emit = async (block: string, ctl: TransformStreamDefaultController<Uint8Array>): Promise<void> => {
    const lines = block.split(/\r\n|\n|\r/);
    const event = lines.find((l) => l.startsWith('event:'))?.slice(6).trim();
    if (event === RECEIPT_SSE_EVENT) {
      await onReceipt(lines.filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n'), chain.commitment);
      return;
    }
    const bytes = enc.encode(block);
    chain.add(bytes);
    ctl.enqueue(bytes);
  };
  return new TransformStream({
    async transform(chunk, ctl) {
      buf += dec.decode(chunk, { stream: true });
      await flushEvents(ctl, false);
    },
    async flush(ctl) {
      buf += dec.decode();
      await flushEvents(ctl, true);
    },
  });
}
