import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { listVmDirs, readVmRecord, vmPaths } from './internal/layout.js';
import { signalGroup, waitGone } from './internal/process.js';

/** What {@link destroyQemuRunDir} found and stopped. */
export interface DestroyRunDirResult {
  /**
   * Pids killed: every process whose command line named the run dir (QEMU processes, their
   * watchdogs), each with its process group (socat children).
   */
  readonly killed: readonly number[];
  /** Shared RAM files removed. */
  readonly ramFiles: readonly string[];
}

/**
 * Stops everything that belongs to a run directory and removes it: every process whose command line
 * names the directory (QEMU processes of any generation, watchdogs; killed with their process
 * groups, so socat children go too), whatever the records say, and every VM's shared RAM file.
 * For tests and for decommissioning a host; a driver on the directory must be closed first.
 */
export async function destroyQemuRunDir(runDir: string): Promise<DestroyRunDirResult> {
  const ramFiles: string[] = [];
  for (const name of listVmDirs(runDir)) {
    try {
      const memPath = readVmRecord(vmPaths(runDir, name).record)?.spec.memPath;
      if (typeof memPath === 'string') ramFiles.push(memPath);
    } catch {
      // a record of another format: its processes are still found below
    }
  }
  const needle = `${runDir.replace(/\/+$/, '')}/`;
  const killed: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (!cmdline.includes(needle)) continue;
    signalGroup(pid, 'SIGKILL');
    killed.push(pid);
  }
  for (const pid of killed) await waitGone(pid, 2_000);
  for (const file of ramFiles) rmSync(file, { force: true });
  rmSync(runDir, { recursive: true, force: true });
  return { killed, ramFiles };
}

/** The serial log of a VM under a run dir (for tests that read the guest's console). */
export function serialLogOf(runDir: string, vm: string): string {
  return join(vmPaths(runDir, vm).dir, 'serial.log');
}
