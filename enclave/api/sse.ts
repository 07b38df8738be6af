/**
 * Server-sent events (WHATWG HTML §9.2) as an OpenAI stream carries them: splits a byte stream into whole events
 * so each is forwarded (and sealed into its own chunked-OHTTP chunk) as soon as it is complete, holds back the
 * terminal `data: [DONE]` so gm can add its own final event (the receipt) before it, and notices `usage`.
 */
const te = new TextEncoder();
const td = new TextDecoder();

export class SseSplitter {
  #buf = '';
  done = false;
  usage: { promptTokens: number; completionTokens: number } | undefined;

  /** Returns the complete events in `bytes` (with their blank-line terminators), minus `[DONE]`. */
  push(bytes: Uint8Array): Uint8Array[] {
    this.#buf += td.decode(bytes, { stream: true });
    const out: Uint8Array[] = [];
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.#buf);
      if (!m) break;
      const ev = this.#buf.slice(0, m.index);
      this.#buf = this.#buf.slice(m.index + m[0].length);
      if (/^data: ?\[DONE\]\s*$/m.test(ev)) {
        this.done = true;
        continue;
      }
      if (ev.includes('"usage"')) this.#usage(ev);
      out.push(te.encode(`${ev}\n\n`));
    }
    return out;
  }

  /** Whatever is left (an unterminated event) when the stream ends. */
  rest(): Uint8Array | undefined {
    const r = this.#buf;
    this.#buf = '';
    return r.trim() ? te.encode(r) : undefined;
  }

  #usage(ev: string): void {
    const data = ev.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
    try {
      const u = (JSON.parse(data) as { usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null }).usage;
      if (u && typeof u.prompt_tokens === 'number' && typeof u.completion_tokens === 'number') this.usage = { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens };
    } catch {
      // not JSON: not ours to judge, forwarded as is
    }
  }
}

export const sseEvent = (event: string | undefined, data: string): Uint8Array => te.encode(`${event ? `event: ${event}\n` : ''}data: ${data}\n\n`);
export const SSE_DONE = te.encode('data: [DONE]\n\n');
