/**
 * A stand-in Pacemaker cluster for running the real azure-events-az resource agent: the agent finds
 * the stand-in crm_* commands (test/clients/standins/) first on PATH, and they keep attributes and
 * a log of every call under one state directory. See standins/_common.sh for the layout.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLIENT_PATHS, STANDINS_DIR, cleanEnv, type Namespace, type RunResult } from './harness.js';

/** The agent's attribute names (azure-events-az in resource-agents 4.12). */
export const ATTR = {
  curNodeState: 'azure-events-az_curNodeState',
  pendingEventIDs: 'azure-events-az_pendingEventIDs',
  lastDocVersion: 'azure-events-az_lastDocVersion',
  globalPullState: 'azure-events-az_globalPullState',
  health: '#health-azure',
  azName: 'azName',
} as const;

export class FakeCluster {
  readonly dir: string;
  /** Node names as `crm_node --list` reports them; the first is the one the agent runs on. */
  readonly nodes: readonly string[];

  constructor(dir: string, nodes: readonly string[]) {
    this.dir = dir;
    this.nodes = nodes;
  }

  static async create(dir: string, nodes: readonly string[]): Promise<FakeCluster> {
    await rm(dir, { recursive: true, force: true });
    await mkdir(join(dir, 'attributes'), { recursive: true });
    await writeFile(join(dir, 'nodes'), nodes.map((n, i) => `${i + 1} ${n} member\n`).join(''));
    await writeFile(join(dir, 'calls.log'), '');
    return new FakeCluster(dir, nodes);
  }

  private file(name: string, node: string | undefined): string {
    return join(this.dir, 'attributes', node === undefined ? 'crm_config' : `node-${node}`, name);
  }

  /** A node attribute (node given) or a cluster property (crm_config); undefined when unset. */
  async attr(name: string, node?: string): Promise<string | undefined> {
    const f = this.file(name, node);
    return existsSync(f) ? (await readFile(f, 'utf8')).replace(/\n$/, '') : undefined;
  }

  async setAttr(name: string, value: string, node?: string): Promise<void> {
    await mkdir(join(this.file(name, node), '..'), { recursive: true });
    await writeFile(this.file(name, node), `${value}\n`);
  }

  /** Every stand-in call so far, as argv arrays (command first). */
  async calls(): Promise<string[][]> {
    const text = await readFile(join(this.dir, 'calls.log'), 'utf8');
    return text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t'));
  }

  /** The agent's own log (HA_LOGFILE). */
  async agentLog(): Promise<string> {
    const f = join(this.dir, 'agent.log');
    return existsSync(f) ? readFile(f, 'utf8') : '';
  }

  /**
   * Runs one action of the unmodified agent inside the namespace, with the environment Pacemaker's
   * executor gives an OCF agent (OCF_ROOT, OCF_RESOURCE_INSTANCE, OCF_RESKEY_*, CRM_meta_*).
   */
  async runAgent(ns: Namespace, action: string, params: Record<string, string> = {}): Promise<RunResult> {
    const { ocfRoot, agent } = CLIENT_PATHS['resource-agents'];
    const env = cleanEnv({
      PATH: `${STANDINS_DIR}:${cleanEnv().PATH}`,
      STANDIN_STATE: this.dir,
      OCF_ROOT: ocfRoot,
      OCF_RA_VERSION_MAJOR: '1',
      OCF_RA_VERSION_MINOR: '1',
      OCF_RESOURCE_INSTANCE: 'rsc_azure-events-az',
      OCF_RESOURCE_TYPE: 'azure-events-az',
      OCF_RESOURCE_PROVIDER: 'heartbeat',
      OCF_RESKEY_CRM_meta_interval: '10000',
      OCF_RESKEY_CRM_meta_timeout: '240000',
      OCF_RESKEY_CRM_meta_on_node: this.nodes[0] ?? '',
      HA_LOGFILE: join(this.dir, 'agent.log'),
      HA_debug: '1',
      ...Object.fromEntries(Object.entries(params).map(([k, v]) => [`OCF_RESKEY_${k}`, v])),
    });
    // The agent runs through its own shebang (#!/usr/bin/python3 -tt), i.e. Debian's python.
    return ns.exec(agent, [action], { env, timeoutMs: 30_000 });
  }
}
