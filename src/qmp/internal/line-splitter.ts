/**
 * Splits a byte stream into text lines for newline-delimited JSON (QMP and the guest agent).
 *
 * - Works on bytes, so a multi-byte UTF-8 character split across two chunks is decoded whole.
 * - Accepts `\n` and `\r\n` (QEMU ends QMP lines with `\r\n`, qemu-ga with `\n`).
 * - A 0xFF byte (never valid in UTF-8) discards the partial line before it: the guest agent's
 *   `guest-sync-delimited` sentinel, which marks where the stream becomes trustworthy again.
 * - Blank lines are dropped.
 * - A line longer than `maxLineBytes` throws, so a peer cannot make us buffer without limit.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  #parts: Buffer[] = [];
  #partialBytes = 0;

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  /** Bytes of the partial line held back waiting for its newline. */
  get partialBytes(): number {
    return this.#partialBytes;
  }

  /** Feeds one chunk; returns the lines it completes. Throws {@link LineTooLongError}. */
  push(chunk: Uint8Array): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let index = 0; index < chunk.length; index += 1) {
      const byte = chunk[index];
      if (byte === 0x0a) {
        this.#append(chunk.subarray(start, index));
        const text = this.#take();
        const line = text.endsWith('\r') ? text.slice(0, -1) : text;
        if (line.trim() !== '') lines.push(line);
        start = index + 1;
      } else if (byte === 0xff) {
        this.#parts = [];
        this.#partialBytes = 0;
        start = index + 1;
      }
    }
    this.#append(chunk.subarray(start));
    return lines;
  }

  #append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.#partialBytes += bytes.length;
    if (this.#partialBytes > this.#maxLineBytes) {
      const seen = this.#partialBytes;
      this.#parts = [];
      this.#partialBytes = 0;
      throw new LineTooLongError(seen, this.#maxLineBytes);
    }
    this.#parts.push(Buffer.from(bytes));
  }

  #take(): string {
    const text = Buffer.concat(this.#parts, this.#partialBytes).toString('utf8');
    this.#parts = [];
    this.#partialBytes = 0;
    return text;
  }
}

/** A peer sent a line longer than the transport accepts. */
export class LineTooLongError extends Error {
  override readonly name = 'LineTooLongError';
  readonly bytes: number;
  readonly maxLineBytes: number;

  constructor(bytes: number, maxLineBytes: number) {
    super(`a line exceeded ${maxLineBytes} bytes without a newline (at least ${bytes} bytes)`);
    this.bytes = bytes;
    this.maxLineBytes = maxLineBytes;
  }
}
