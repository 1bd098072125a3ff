/**
 * Crash trials, the fault: reaching the drawn point of a rollout (by the processes' log lines as
 * they arrive, the agents' view of their VMs, or the update command's process) and sending the
 * drawn signal to the drawn target, then bringing it back.
 */
import type { Cluster, Proc, Watcher } from './harness.js';
import { sleep } from './harness.js';
import type { AgentVmsBody, TrialBackend } from './trial-backend.js';
import type { TrialSpec } from './trial-plan.js';

/** How long to wait for the drawn point to come. */
const POINT_TIMEOUT_MS = { sim: 60_000, qemu: 180_000 } as const;

export interface PointContext {
  readonly cluster: Cluster;
  readonly spec: TrialSpec;
  readonly host: string;
  readonly eventIds: ReadonlySet<string>;
  readonly vmsOf: ReadonlySet<string>;
  readonly watcher: Watcher;
  readonly versions: { from: string; to: string } | undefined;
  readonly backend: TrialBackend;
}

/** A JSON log line (`err: {...}`) that `test` accepts. */
function logLine(test: (entry: Record<string, unknown>) => boolean): (line: string) => boolean {
  return (line) => {
    if (!line.startsWith('err: {')) return false;
    try {
      return test(JSON.parse(line.slice(5)) as Record<string, unknown>);
    } catch {
      return false;
    }
  };
}

/** Waits for the drawn point; resolves with what was seen there, or undefined when it never came. */
export async function reachPoint(p: PointContext): Promise<string | undefined> {
  const { cluster, spec, host } = p;
  const timeoutMs = POINT_TIMEOUT_MS[spec.hosts];
  const controller = cluster.controller.proc;
  const agent = cluster.agent(host).proc;
  switch (spec.point) {
    case 'mid-publish': {
      // The controller logs each event once it is written, and a wave's few writes take a few ms:
      // a kill at once on the first line may land before the last (it does, now and then).
      const line = await controller.waitFor(
        logLine((e) => e.msg === 'event scheduled' && p.eventIds.has(String(e.eventId))),
        { timeoutMs },
      );
      return line && `first event of wave ${spec.wave} logged as scheduled`;
    }
    case 'step-saved': {
      const line = await controller.waitFor(
        logLine((e) => e.msg === 'host step dispatched' && e.host === host),
        { timeoutMs },
      );
      return line && `step of ${host} saved as dispatched`;
    }
    case 'mid-commit': {
      if (spec.target === 'controller') {
        // The agent has finished; the controller's next poll (every 250 ms) writes the outcome.
        const line = await agent.waitFor(
          logLine((e) => e.msg === 'host step ended'),
          { timeoutMs },
        );
        return line && `${host}'s agent reported its step ended`;
      }
      // The update is done and the VMs run again: the agent resynchronises clocks and writes its journal.
      const started = await agent.waitFor(
        logLine((e) => e.msg === 'host step started'),
        { timeoutMs },
      );
      if (!started) return undefined;
      if (p.backend.hosts === 'qemu' && spec.update === 'host-patch') {
        // The update command ran while the VMs were paused: once it is gone they are being resumed.
        if (!(await untilPids(p.backend, host, true, timeoutMs))) return undefined;
        if (!(await untilPids(p.backend, host, false, timeoutMs))) return undefined;
        return `${host}'s update command ended: its VMs are being resumed`;
      }
      const done = await pollVms(cluster, host, timeoutMs, (vms) =>
        vms
          .filter((v) => p.vmsOf.has(v.name))
          .every((v) => v.state === 'running' && (p.versions === undefined || v.vmmVersion === p.versions.to)),
      );
      return done ? `${host}'s VMs run again after the update` : undefined;
    }
    case 'mid-pause': {
      if (p.backend.hosts === 'qemu') {
        // The agent runs the update command once every VM is paused and its lease written. (Its
        // `/v1/vms` answers slowly while the driver is busy pausing: the command is the sure sign.)
        const started = await agent.waitFor(
          logLine((e) => e.msg === 'host step started'),
          { timeoutMs },
        );
        if (!started || !(await untilPids(p.backend, host, true, timeoutMs))) return undefined;
        return `${host}'s VMs paused and its update command running`;
      }
      const paused = await pollVms(cluster, host, timeoutMs, (vms) =>
        vms.filter((v) => p.vmsOf.has(v.name)).every((v) => v.state === 'paused'),
      );
      return paused ? `${host}'s VMs paused for the patch` : undefined;
    }
    case 'mid-swap': {
      const line = await agent.waitFor(
        logLine((e) => e.msg === 'host step started' && e.kind === 'migrate-in-place'),
        {
          timeoutMs,
        },
      );
      return line && `${host}'s in-place VMM swap started`;
    }
  }
}

/** Polls every 10 ms until the host's update command runs (`present`) or has gone. */
async function untilPids(backend: TrialBackend, host: string, present: boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (backend.pidsOf('host-update', host).length > 0 === present) return true;
    await sleep(10);
  }
  return false;
}

/** Polls an agent's VMs every 20 ms until `test` holds. */
export async function pollVms(
  cluster: Cluster,
  host: string,
  timeoutMs: number,
  test: (vms: AgentVmsBody['vms']) => boolean,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const body = await cluster.agentGet<AgentVmsBody>(host, '/v1/vms').catch(() => undefined);
    if (body && body.vms.length > 0 && test(body.vms)) return true;
    await sleep(20);
  }
  return false;
}

/** Sends the drawn signal to the drawn target and brings it back; says what it did. */
export async function fault(cluster: Cluster, backend: TrialBackend, spec: TrialSpec, host: string): Promise<string> {
  const down = async (proc: Proc, restart: () => Promise<void>, name: string): Promise<string> => {
    if (spec.signal === 'SIGKILL') {
      await proc.kill('SIGKILL');
      await sleep(spec.downMs);
      await restart();
      return `kill -9 ${name}, restarted after ${spec.downMs} ms`;
    }
    proc.signal('SIGSTOP');
    await sleep(spec.downMs);
    proc.signal('SIGCONT');
    return `SIGSTOP ${name} for ${spec.downMs} ms`;
  };
  const agentDown = (why: string): Promise<string> =>
    down(cluster.agent(host).proc, () => cluster.restartAgent(host), `agent of ${host}${why}`);
  switch (spec.target) {
    case 'controller':
      return down(cluster.controller.proc, () => cluster.startController(), 'the controller');
    case 'agent':
      return agentDown('');
    case 'host-update':
    case 'watchdog': {
      if (backend.hosts === 'sim') {
        // The simulated host's update runs in its agent's process, as its VMs do.
        return agentDown(' (the simulated update runs inside it)');
      }
      const pids = backend.pidsOf(spec.target, host);
      if (pids.length === 0) return `no ${spec.target} process of ${host} found to signal`;
      for (const pid of pids) signalPid(pid, spec.signal);
      if (spec.signal === 'SIGSTOP') {
        await sleep(spec.downMs);
        for (const pid of pids) signalPid(pid, 'SIGCONT');
        return `SIGSTOP ${spec.target} of ${host} (pids ${pids.join(' ')}) for ${spec.downMs} ms`;
      }
      // Not restarted by the trial: a killed update fails its step; the driver starts a missing
      // watchdog again before it pauses that VM next.
      return `kill -9 ${spec.target} of ${host} (pids ${pids.join(' ')})`;
    }
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}
