/**
 * The resume watchdog process: `node watchdog.js --qmp SOCKET --lease FILE --max-pause-ms N`.
 * Started detached by the QEMU driver beside every QEMU process, on that process's watchdog
 * monitor; it runs {@link ResumeWatchdog} until the process exits, and logs NDJSON to stdout
 * (the driver points stdout at `g<N>/watchdog.log`). It outlives the driver and the agent: that is
 * its purpose.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { QmpClient } from '../../qmp/index.js';
import { readLease } from './internal/layout.js';
import { ResumeWatchdog, type WatchdogLogEntry } from './resume-watchdog.js';

/** How long the watchdog tries to reach its monitor at start (QEMU creates it early). */
const CONNECT_TIMEOUT_MS = 15_000;

function log(entry: WatchdogLogEntry | Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(entry)}\n`);
}

async function connect(path: string): Promise<QmpClient> {
  const end = Date.now() + CONNECT_TIMEOUT_MS;
  for (;;) {
    try {
      return await QmpClient.connect({ path, timeoutMs: 5_000 });
    } catch (error) {
      if (Date.now() >= end) throw error;
      await delay(50);
    }
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      qmp: { type: 'string' },
      lease: { type: 'string' },
      'max-pause-ms': { type: 'string' },
    },
    strict: true,
  });
  const qmpPath = values.qmp;
  const leasePath = values.lease;
  const maxPauseMs = Number(values['max-pause-ms']);
  if (qmpPath === undefined || leasePath === undefined || !(maxPauseMs > 0)) {
    throw new Error('usage: watchdog --qmp SOCKET --lease FILE --max-pause-ms N');
  }
  const qmp = await connect(qmpPath);
  const watchdog = new ResumeWatchdog({ qmp, readLease: () => readLease(leasePath), maxPauseMs, log });
  const stop = (): void => {
    void watchdog.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  watchdog.start();
  await watchdog.done;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log({ at: Date.now(), event: 'fatal', error: String(error) });
    process.exit(1);
  },
);
