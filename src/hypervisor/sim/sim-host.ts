import { IntermissionError } from '../../domain/index.js';
import type { DriverCapabilities } from '../driver.js';
import { HostState } from './internal/host-state.js';
import type { SimFault, SimHostConfig, SimVmSpec } from './sim-config.js';
import { SimDriver } from './sim-driver.js';
import type { SimTime } from './sim-time.js';
import type { ActiveSimFault, SimHostEvent, SimVmSnapshot } from './sim-types.js';

/**
 * A simulated host: its VMs (each with a guest clock that stops while paused and drifts a little),
 * seeded timings, faults declared as data, and a history of what happened. Agents act on it through
 * drivers from {@link connect}; tests and the embedded default also inspect the ground truth here and
 * inject faults.
 *
 * @example
 * const time = new VirtualTime({ autoAdvance: true });
 * const host = new SimHost({ name: 'h1', time, seed: 7, vms: [{ name: 'vm1' }] });
 * const driver = host.connect();
 * await driver.pause({ vm: 'vm1' });
 * host.injectFault({ kind: 'fail', operation: 'resume', vm: 'vm1', times: 2 });
 */
export class SimHost {
  readonly #state: HostState;

  constructor(config: SimHostConfig) {
    this.#state = new HostState(config);
  }

  /** The host's name, as its drivers report it. */
  get name(): string {
    return this.#state.name;
  }

  /** The clock and sleeper the host runs on. */
  get time(): SimTime {
    return this.#state.time;
  }

  /** The capability profile of its drivers. */
  get capabilities(): DriverCapabilities {
    return this.#state.capabilities;
  }

  /** A new driver connection. Closing one leaves the VMs and other connections as they are. */
  connect(): SimDriver {
    return new SimDriver(this.#state);
  }

  /** Adds a VM; `CONFLICT` when the name is taken. */
  addVm(spec: SimVmSpec): SimVmSnapshot {
    return this.#state.addVm(spec).snapshot(this.#state.time.now());
  }

  /** The ground truth of one VM; `NOT_FOUND` for an unknown name. */
  vm(name: string): SimVmSnapshot {
    const vm = this.#state.vms.get(name);
    if (vm === undefined) {
      throw new IntermissionError('NOT_FOUND', `host ${this.name} has no VM named ${JSON.stringify(name)}`);
    }
    return vm.snapshot(this.#state.time.now());
  }

  /** The ground truth of every VM, by name. */
  vms(): readonly SimVmSnapshot[] {
    const now = this.#state.time.now();
    return [...this.#state.vms.values()].map((vm) => vm.snapshot(now)).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Injects a fault; `INVALID_INPUT` when it is malformed. Returns its id for {@link removeFault}. */
  injectFault(fault: SimFault): { readonly id: number } {
    return Object.freeze({ id: this.#state.injectFault(fault) });
  }

  /** Removes one fault; false when it was spent or removed already. */
  removeFault(options: { readonly id: number }): boolean {
    return this.#state.removeFault(options.id);
  }

  /** Removes every fault, or every fault naming `vm`. */
  clearFaults(options: { readonly vm?: string } = {}): void {
    this.#state.clearFaults(options.vm);
  }

  /** Faults not yet spent. */
  faults(): readonly ActiveSimFault[] {
    return this.#state.activeFaults();
  }

  /** The VM's process dies now, outside any operation: the VM becomes `failed`. */
  crash(options: { readonly vm: string }): void {
    const vm = this.#state.vms.get(options.vm);
    if (vm === undefined) {
      throw new IntermissionError('NOT_FOUND', `host ${this.name} has no VM named ${JSON.stringify(options.vm)}`);
    }
    if (vm.state === 'failed') return;
    vm.kill(this.#state.time.now());
    this.#state.record({ kind: 'crashed', vm: vm.name });
  }

  /**
   * Holds host updates: from now until `release()`, an update that has run its apply time waits for
   * the release before it completes (an update under way when the hold starts waits too). For tests
   * that must observe the VMs paused while the update is under way: the test holds what it looks at,
   * instead of racing the apply time. The call's deadline and the VMs' resume leases still apply, so
   * a hold never keeps a VM paused past its budget. Releasing twice is harmless.
   */
  holdUpdates(): { release(): void } {
    let resolve: () => void = () => undefined;
    const hold = new Promise<void>((r) => {
      resolve = r;
    });
    this.#state.updateHolds.add(hold);
    return {
      release: () => {
        this.#state.updateHolds.delete(hold);
        resolve();
      },
    };
  }

  /** What happened on the host, oldest first. */
  history(): readonly SimHostEvent[] {
    return this.#state.history.entries();
  }

  /** Ids of the updates applied, in order. */
  appliedUpdates(): readonly string[] {
    return [...this.#state.appliedUpdates];
  }
}
