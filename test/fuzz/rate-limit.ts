/**
 * The metadata listeners' rate limit: the pacer that keeps the main run's guests under it, and the
 * rate-limit path, fuzzed apart from the main run (which keeps every VM under its limit so
 * that its inputs reach the handlers): a burst of valid and hostile requests at one VM's metadata
 * listener, faster than a guest may send, counting what was let through and what was refused with
 * 429. Approvals in the burst are of events of another scope, so none of them may change anything.
 */
import { sleep } from '../crash/harness.js';
import { sendRaw } from './wire.js';

/** The guests' rate the fuzzer keeps to per VM (the listeners allow 5/s, burst 10). */
const VM_RATE_PER_S = 4;
const VM_BURST = 8;

export class Pacer {
  readonly #tokens = new Map<string, { tokens: number; at: number }>();
  /** Waits until `vm` may send one more request, then takes it. */
  async take(vm: string): Promise<void> {
    for (;;) {
      const now = Date.now();
      const b = this.#tokens.get(vm) ?? { tokens: VM_BURST, at: now };
      b.tokens = Math.min(VM_BURST, b.tokens + ((now - b.at) / 1000) * VM_RATE_PER_S);
      b.at = now;
      this.#tokens.set(vm, b);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return;
      }
      await sleep(Math.ceil(((1 - b.tokens) / VM_RATE_PER_S) * 1000));
    }
  }
  reset(): void {
    this.#tokens.clear();
  }
}

export interface BurstResult {
  readonly vm: string;
  readonly sent: number;
  readonly statuses: Record<string, number>;
}

const GET =
  'GET /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n';

function approve(id: string): string {
  const body = JSON.stringify({ StartRequests: [{ EventId: id }] });
  return `POST /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** Sends `count` requests to `port` at once (GETs, and approvals of `otherScopeIds`) and counts the answers. */
export async function burst(options: {
  vm: string;
  port: number;
  count: number;
  otherScopeIds: readonly string[];
}): Promise<BurstResult> {
  const requests = Array.from({ length: options.count }, (_, i) => {
    const id = options.otherScopeIds[i % Math.max(1, options.otherScopeIds.length)];
    return i % 3 === 2 && id !== undefined ? approve(id) : GET;
  });
  const results = await Promise.all(
    requests.map((r) => sendRaw({ port: options.port, bytes: Buffer.from(r), timeoutMs: 5_000, drainMs: 50 })),
  );
  const statuses: Record<string, number> = {};
  for (const r of results) {
    const key = String(r.status ?? r.outcome);
    statuses[key] = (statuses[key] ?? 0) + 1;
  }
  return { vm: options.vm, sent: options.count, statuses };
}
