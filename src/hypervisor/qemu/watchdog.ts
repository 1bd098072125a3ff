/**
 * The resume watchdog process: `node watchdog.js --qmp SOCKET --lease FILE --max-pause-ms N
 * [--vm NAME --lease-resumes FILE --clock-lock FILE [--guest-agent SOCKET]]`.
 * Started detached by the QEMU driver beside every QEMU process, on that process's watchdog
 * monitor; it runs {@link ResumeWatchdog} until the process exits, and logs NDJSON to stdout
 * (the driver points stdout at `g<N>/watchdog.log`). It outlives the driver and the agent: that is
 * its purpose. After each resume of its own it resynchronises the guest clock through the guest
 * agent and records the resume and the residual in `--lease-resumes` (see `guest-clock.ts`), where
 * the agent that adopts the VM reads them.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { QmpClient, preciseWallClock } from '../../qmp/index.js';
import type { LeaseResume } from '../driver.js';
import { recordLeaseResume, resyncAfterLease } from './guest-clock.js';
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
      vm: { type: 'string' },
      'lease-resumes': { type: 'string' },
      'clock-lock': { type: 'string' },
      'guest-agent': { type: 'string' },
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
  const vm = values.vm;
  const recordPath = values['lease-resumes'];
  const lockPath = values['clock-lock'];
  const guestAgentPath = values['guest-agent'];
  // Started by an older driver (no --vm): it resumes, and the adopting agent resynchronises.
  const afterResume =
    vm === undefined || recordPath === undefined || lockPath === undefined
      ? undefined
      : async ({ pausedSince, resumedAt }: { pausedSince: number; resumedAt: number }): Promise<void> => {
          const entry =
            guestAgentPath === undefined
              ? await recordWithoutAgent({ vm, recordPath, pausedAt: pausedSince, resumedAt })
              : await resyncAfterLease({
                  vm,
                  guestAgentPath,
                  lockPath,
                  recordPath,
                  pausedAt: pausedSince,
                  resumedAt,
                  clock: preciseWallClock,
                });
          log({
            at: Date.now(),
            event: 'clock-resync',
            offsetBeforeMs: entry.clock?.offsetBeforeMs ?? null,
            residualMs: entry.clock?.residualMs ?? null,
            roundTripMs: entry.clock?.roundTripMs ?? null,
            error: entry.clockError,
          });
        };
  const watchdog = new ResumeWatchdog({
    qmp,
    readLease: () => readLease(leasePath),
    maxPauseMs,
    log,
    ...(afterResume === undefined ? {} : { afterResume }),
  });
  const stop = (): void => {
    void watchdog.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  watchdog.start();
  await watchdog.done;
}

/** A VM without a guest agent: its resume is recorded, its clock cannot be reached. */
function recordWithoutAgent(options: {
  vm: string;
  recordPath: string;
  pausedAt: number;
  resumedAt: number;
}): Promise<LeaseResume> {
  const entry: LeaseResume = {
    vm: options.vm,
    pausedAt: options.pausedAt,
    resumedAt: options.resumedAt,
    clock: null,
    clockError: {
      code: 'UNREACHABLE',
      message: `VM ${options.vm} has no guest agent: its clock was not resynchronised`,
    },
  };
  recordLeaseResume(options.recordPath, entry);
  return Promise.resolve(entry);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    log({ at: Date.now(), event: 'fatal', error: String(error) });
    process.exit(1);
  },
);
