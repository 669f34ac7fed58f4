/** An incremental `text/event-stream` parser (WHATWG rules), for reading SSE from a fetch body
 * where `EventSource` is absent (Node) or cannot send headers. */

export interface SseMessage {
  event: string;
  data: string;
  id: string | undefined;
}

export class SseParser {
  private decoder = new TextDecoder("utf-8");
  private partial = "";
  private afterCr = false;
  private data: string[] = [];
  private event = "";
  private id: string | undefined = undefined;
  private started = false;

  /** Feed bytes (or text) as they arrive; get the messages they complete. */
  feed(chunk: Uint8Array | string): SseMessage[] {
    let text = typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!this.started && text) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (!text) return [];
    if (this.afterCr && text[0] === "\n") text = text.slice(1);
    this.afterCr = text.endsWith("\r");
    const lines = text.split(/\r\n|\r|\n/);
    if (lines.length === 1) {
      this.partial += text;
      return [];
    }
    lines[0] = this.partial + lines[0];
    this.partial = lines.pop() ?? "";
    const out: SseMessage[] = [];
    for (const line of lines) {
      const message = this.line(line);
      if (message) out.push(message);
    }
    return out;
  }

  private line(line: string): SseMessage | undefined {
    if (line === "") return this.dispatch();
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.id = value || undefined;
    return undefined; // a comment, `retry` or an unknown field
  }

  private dispatch(): SseMessage | undefined {
    const data = this.data;
    const event = this.event;
    this.data = [];
    this.event = "";
    if (data.length === 0) return undefined;
    return { event: event || "message", data: data.join("\n"), id: this.id };
  }
}
