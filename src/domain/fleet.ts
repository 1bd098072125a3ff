import { z } from 'zod';
import { IntermissionError } from './errors.js';
import {
  DEFAULT_UPDATE_DOMAINS,
  MAX_FAULT_DOMAINS,
  MAX_UPDATE_DOMAINS,
  scopeOf,
  type AvailabilitySet,
  type Fleet,
  type Host,
  type ScopeId,
  type Vm,
  type VmInstanceInfo,
} from './vocabulary.js';

/**
 * Bounds of a fleet file (docs/limits.md, "Rollouts, policies and fleet files"). A fleet file is the
 * operator's, but a generated one can be wrong by orders of magnitude; each bound turns such a file
 * into a clear INVALID_INPUT at start instead of a controller that runs out of memory or hands
 * tenants a metadata document of megabytes. Update and fault domains are bounded by the design's
 * {@link MAX_UPDATE_DOMAINS} (20) and {@link MAX_FAULT_DOMAINS} (3).
 */
export const FLEET_LIMITS = Object.freeze({
  /**
   * Most hosts: 50,000, five times the benchmark region (10,000 hosts, 250,000 VMs), which one
   * controller applies in under 1 GiB (README, "Memory"). Past that, split the fleet over regions.
   */
  maxHosts: 50_000,
  /** Most VMs: 1,000,000, four times the benchmark region, for the same reason. */
  maxVms: 1_000_000,
  /** Most availability sets: 200,000, enough for every VM of the largest fleet in sets of five. */
  maxAvailabilitySets: 200_000,
  /** Longest host, set or VM name: Azure's 64 characters (the name pattern below). */
  maxNameLength: 64,
  /** Most labels on a host, and their key and value lengths (Kubernetes allows 63 + a 253 prefix). */
  maxLabels: 64,
  maxLabelLength: 256,
  /** Most tags of a VM, and their name and value lengths: Azure's own limits (50, 512, 256). */
  maxTags: 50,
  maxTagNameLength: 512,
  maxTagValueLength: 256,
  /** userData, in characters: Azure's 64 KiB. The metadata service hands it to the guest as is. */
  maxUserDataLength: 64 * 1024,
  /** Most SSH public keys of a VM, and the longest key (a 16384-bit RSA key is under 3 KiB). */
  maxPublicKeys: 32,
  maxKeyDataLength: 16 * 1024,
  /** Longest other instance fact (location, size, computer name, addresses...). */
  maxFactLength: 256,
  /**
   * Largest fleet file read, in bytes: 256 MiB, about twice the JSON of the largest fleet. The whole
   * file is read and parsed in memory; a larger one is refused before it is read.
   */
  maxFileBytes: 256 * 1024 * 1024,
} as const);

/** Azure resource-name rules, the strictest that our VMs meet: 1-64 of letters, digits, `_ - .`. */
const NAME = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/,
    'must be 1-64 letters, digits, "_", "-" or ".", starting with a letter or digit',
  );
const GUID = z
  .string()
  .regex(/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, 'must be a GUID');

const FACT = z.string().max(FLEET_LIMITS.maxFactLength);
const LABELS = z
  .record(z.string().max(FLEET_LIMITS.maxLabelLength), z.string().max(FLEET_LIMITS.maxLabelLength))
  .refine((l) => Object.keys(l).length <= FLEET_LIMITS.maxLabels, `at most ${FLEET_LIMITS.maxLabels} labels`);

const instanceSchema = z
  .object({
    location: FACT,
    vmSize: FACT,
    osType: z.enum(['Linux', 'Windows']),
    resourceGroupName: FACT,
    subscriptionId: FACT,
    tags: z
      .record(z.string().max(FLEET_LIMITS.maxTagNameLength), z.string().max(FLEET_LIMITS.maxTagValueLength))
      .refine((t) => Object.keys(t).length <= FLEET_LIMITS.maxTags, `at most ${FLEET_LIMITS.maxTags} tags`),
    zone: FACT,
    computerName: FACT,
    adminUsername: FACT,
    publicKeys: z
      .array(z.object({ keyData: z.string().max(FLEET_LIMITS.maxKeyDataLength), path: FACT }).strict())
      .max(FLEET_LIMITS.maxPublicKeys),
    userData: z.string().max(FLEET_LIMITS.maxUserDataLength),
    macAddress: z.string().regex(/^[0-9A-Fa-f]{12}$/, 'must be 12 hex digits without separators'),
    privateIpAddress: FACT,
    subnetAddress: FACT,
    subnetPrefix: FACT,
    priority: z.enum(['Regular', 'Spot']),
    vmScaleSetName: FACT,
  })
  .strict()
  .partial();

/** The fleet file: JSON or YAML of this shape. Unknown keys are errors, so typos do not pass. */
export const fleetFileSchema = z
  .object({
    /** Instance facts shared by every VM unless the VM overrides them. */
    defaults: instanceSchema.optional(),
    hosts: z
      .array(z.object({ name: NAME, labels: LABELS.optional() }).strict())
      .max(FLEET_LIMITS.maxHosts, `at most ${FLEET_LIMITS.maxHosts} hosts`),
    availabilitySets: z
      .array(
        z
          .object({
            name: NAME,
            updateDomains: z
              .number()
              .int()
              .min(1)
              .max(MAX_UPDATE_DOMAINS, `a set has at most ${MAX_UPDATE_DOMAINS} update domains`)
              .optional(),
            faultDomains: z
              .number()
              .int()
              .min(1)
              .max(MAX_FAULT_DOMAINS, `a set has at most ${MAX_FAULT_DOMAINS} fault domains`)
              .optional(),
          })
          .strict(),
      )
      .max(FLEET_LIMITS.maxAvailabilitySets, `at most ${FLEET_LIMITS.maxAvailabilitySets} availability sets`)
      .optional(),
    vms: z
      .array(
        z
          .object({
            name: NAME,
            vmId: GUID.optional(),
            host: NAME,
            availabilitySet: NAME.optional(),
            updateDomain: z
              .number()
              .int()
              .min(0)
              .max(
                MAX_UPDATE_DOMAINS - 1,
                `at most ${MAX_UPDATE_DOMAINS - 1} (a set has at most ${MAX_UPDATE_DOMAINS} update domains)`,
              )
              .optional(),
            faultDomain: z
              .number()
              .int()
              .min(0)
              .max(
                MAX_FAULT_DOMAINS - 1,
                `at most ${MAX_FAULT_DOMAINS - 1} (a set has at most ${MAX_FAULT_DOMAINS} fault domains)`,
              )
              .optional(),
            instance: instanceSchema.optional(),
          })
          .strict(),
      )
      .max(FLEET_LIMITS.maxVms, `at most ${FLEET_LIMITS.maxVms} VMs`),
  })
  .strict();

export type FleetFile = z.input<typeof fleetFileSchema>;

/** Instance facts of a VM whose fleet file says nothing about them. */
export const INSTANCE_DEFAULTS: VmInstanceInfo = Object.freeze({
  location: 'local',
  vmSize: 'Standard_D2s_v3',
  osType: 'Linux',
  resourceGroupName: 'intermission',
  subscriptionId: '00000000-0000-0000-0000-000000000000',
  tags: {},
  zone: '',
  computerName: '',
  adminUsername: 'azureuser',
  publicKeys: [],
  userData: '',
  macAddress: '',
  privateIpAddress: '',
  subnetAddress: '10.0.0.0',
  subnetPrefix: '24',
  priority: 'Regular',
  vmScaleSetName: '',
});

/**
 * Validates a parsed fleet file and fills in what it leaves out: update and fault domains are dealt
 * round-robin within a set, as Azure does; vmIds, MACs and private addresses are derived from the
 * VM's name so that they stay the same across restarts.
 */
export function parseFleet(input: unknown): Fleet {
  const parsed = fleetFileSchema.safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new IntermissionError('INVALID_INPUT', `invalid fleet: ${issues.join('; ')}`, { details: { issues } });
  }
  const file = parsed.data;
  const problems: string[] = [];
  const hosts: Host[] = [];
  const hostNames = new Set<string>();
  for (const h of file.hosts) {
    if (hostNames.has(h.name)) problems.push(`host ${h.name} is listed twice`);
    hostNames.add(h.name);
    hosts.push({ name: h.name, labels: { ...h.labels } });
  }
  const sets = new Map<string, AvailabilitySet>();
  for (const s of file.availabilitySets ?? []) {
    if (sets.has(s.name)) problems.push(`availability set ${s.name} is listed twice`);
    sets.set(s.name, {
      name: s.name,
      updateDomains: s.updateDomains ?? DEFAULT_UPDATE_DOMAINS,
      faultDomains: s.faultDomains ?? 2,
    });
  }
  const vmNames = new Set<string>();
  const vmIds = new Set<string>();
  const dealt = new Map<string, number>();
  const vms: Vm[] = [];
  file.vms.forEach((v, index) => {
    const where = `vms.${index} (${v.name})`;
    if (vmNames.has(v.name)) problems.push(`${where}: VM name is used twice`);
    vmNames.add(v.name);
    if (!hostNames.has(v.host)) problems.push(`${where}: host ${v.host} is not in hosts`);
    const set = v.availabilitySet === undefined ? undefined : sets.get(v.availabilitySet);
    if (v.availabilitySet !== undefined && !set)
      problems.push(`${where}: availability set ${v.availabilitySet} is not in availabilitySets`);
    const nth = set ? (dealt.get(set.name) ?? 0) : 0;
    if (set) dealt.set(set.name, nth + 1);
    const updateDomain = v.updateDomain ?? (set ? nth % set.updateDomains : 0);
    const faultDomain = v.faultDomain ?? (set ? nth % set.faultDomains : 0);
    if (set && updateDomain >= set.updateDomains)
      problems.push(`${where}: update domain ${updateDomain} is outside 0..${set.updateDomains - 1}`);
    if (set && faultDomain >= set.faultDomains)
      problems.push(`${where}: fault domain ${faultDomain} is outside 0..${set.faultDomains - 1}`);
    if (!set && (updateDomain !== 0 || faultDomain !== 0))
      problems.push(`${where}: a standalone VM has update and fault domain 0`);
    const vmId = (v.vmId ?? derivedGuid(`vmId:${v.name}`)).toLowerCase();
    if (vmIds.has(vmId)) problems.push(`${where}: vmId ${vmId} is used twice`);
    vmIds.add(vmId);
    const merged = { ...INSTANCE_DEFAULTS, ...file.defaults, ...v.instance };
    const instance: VmInstanceInfo = {
      ...merged,
      computerName: merged.computerName || v.name,
      macAddress: (merged.macAddress || derivedMac(v.name)).toUpperCase(),
      privateIpAddress: merged.privateIpAddress || `10.0.${Math.floor(index / 250) % 250}.${(index % 250) + 4}`,
    };
    vms.push({
      name: v.name,
      vmId,
      host: v.host,
      availabilitySet: v.availabilitySet,
      updateDomain,
      faultDomain,
      instance,
    });
  });
  if (problems.length > 0) {
    throw new IntermissionError('INVALID_INPUT', `invalid fleet: ${problems.join('; ')}`, {
      details: { issues: problems },
    });
  }
  return { hosts, availabilitySets: [...sets.values()], vms };
}

/** Lookups over a fleet, built once. */
export class FleetIndex {
  readonly fleet: Fleet;
  readonly #vms = new Map<string, Vm>();
  readonly #hosts = new Map<string, Host>();
  readonly #sets = new Map<string, AvailabilitySet>();
  readonly #byScope = new Map<ScopeId, Vm[]>();
  readonly #byHost = new Map<string, Vm[]>();

  constructor(fleet: Fleet) {
    this.fleet = fleet;
    for (const h of fleet.hosts) this.#hosts.set(h.name, h);
    for (const s of fleet.availabilitySets) this.#sets.set(s.name, s);
    for (const vm of fleet.vms) {
      this.#vms.set(vm.name, vm);
      push(this.#byScope, scopeOf(vm), vm);
      push(this.#byHost, vm.host, vm);
    }
  }

  vm(name: string): Vm | undefined {
    return this.#vms.get(name);
  }
  host(name: string): Host | undefined {
    return this.#hosts.get(name);
  }
  availabilitySet(name: string): AvailabilitySet | undefined {
    return this.#sets.get(name);
  }
  scopeOfVm(name: string): ScopeId | undefined {
    const vm = this.#vms.get(name);
    return vm ? scopeOf(vm) : undefined;
  }
  vmsInScope(scope: ScopeId): readonly Vm[] {
    return this.#byScope.get(scope) ?? [];
  }
  vmsOnHost(host: string): readonly Vm[] {
    return this.#byHost.get(host) ?? [];
  }
  scopes(): ScopeId[] {
    return [...this.#byScope.keys()];
  }
  requireVm(name: string): Vm {
    const vm = this.#vms.get(name);
    if (!vm) throw new IntermissionError('NOT_FOUND', `no VM named ${JSON.stringify(name)} in the fleet`);
    return vm;
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** FNV-1a, 32 bits, with a seed: enough to derive stable ids from names (not for security). */
function fnv1a(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** A stable GUID (version 4 layout) derived from a string. */
export function derivedGuid(text: string): string {
  const hex = [1, 2, 3, 4].map((seed) => fnv1a(text, seed).toString(16).padStart(8, '0')).join('');
  const variant = ((parseInt(hex[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** A stable locally administered MAC (12 uppercase hex digits) derived from a VM name. */
export function derivedMac(name: string): string {
  const hex = fnv1a(name, 7).toString(16).padStart(8, '0') + fnv1a(name, 9).toString(16).padStart(8, '0');
  return `02${hex.slice(0, 10)}`.toUpperCase();
}
