import { MetadataRequestError } from '../errors.js';

/**
 * Tells the client to drop the connection after a 413: the rest of an oversized body is never read,
 * so the connection cannot carry another request.
 */
export const PAYLOAD_TOO_LARGE_HEADERS: Readonly<Record<string, string>> = Object.freeze({ connection: 'close' });

/**
 * Refuses a request whose declared `Content-Length` is over `maxBytes`, before anything is read.
 *
 * @throws MetadataRequestError `PAYLOAD_TOO_LARGE`
 */
export function checkDeclaredLength(contentLength: string | null, maxBytes: number): void {
  if (contentLength === null) return;
  const length = Number(contentLength);
  if (Number.isFinite(length) && length > maxBytes) {
    throw new MetadataRequestError('PAYLOAD_TOO_LARGE', {
      headers: PAYLOAD_TOO_LARGE_HEADERS,
      detail: `Content-Length ${contentLength} is over ${maxBytes} bytes`,
    });
  }
}

/**
 * Reads the body as UTF-8 text, counting bytes as they stream in, so that a chunked body without a
 * `Content-Length` cannot grow past `maxBytes` either. The stream is released, not cancelled, when
 * the bound is hit: cancelling would reset the socket before the 413 reaches the client.
 *
 * @throws MetadataRequestError `PAYLOAD_TOO_LARGE` over the bound, `MALFORMED_BODY` for bytes that
 *   are not UTF-8
 */
export async function readBodyText(request: Request, maxBytes: number): Promise<string> {
  const body = request.body;
  if (body === null) return '';
  const reader: ReadableStreamDefaultReader<Uint8Array> = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      reader.releaseLock();
      throw new MetadataRequestError('PAYLOAD_TOO_LARGE', {
        headers: PAYLOAD_TOO_LARGE_HEADERS,
        detail: `the body grew past ${maxBytes} bytes`,
      });
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (cause) {
    throw new MetadataRequestError('MALFORMED_BODY', { cause, detail: 'the body is not UTF-8' });
  }
}
