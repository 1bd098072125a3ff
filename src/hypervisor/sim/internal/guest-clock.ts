/**
 * A guest's wall clock: it advances with host time at `1 + drift` while the vCPUs run, and stands
 * still while they are stopped, so a pause leaves the guest behind by the pause length (what QEMU
 * shows under TCG: nothing catches up on its own).
 */
export class GuestClock {
  readonly #rate: number;
  #anchorHost: number;
  #anchorGuest: number;
  #running: boolean;

  constructor(options: {
    readonly hostNow: number;
    readonly offsetMs: number;
    readonly driftPpm: number;
    readonly running: boolean;
  }) {
    this.#rate = 1 + options.driftPpm / 1e6;
    this.#anchorHost = options.hostNow;
    this.#anchorGuest = options.hostNow + options.offsetMs;
    this.#running = options.running;
  }

  /** The guest's wall clock at host time `hostNow`. */
  read(hostNow: number): number {
    return this.#running ? this.#anchorGuest + (hostNow - this.#anchorHost) * this.#rate : this.#anchorGuest;
  }

  /** The vCPUs stop: the clock stands still from here. */
  stop(hostNow: number): void {
    if (!this.#running) return;
    this.#anchorGuest = this.read(hostNow);
    this.#anchorHost = hostNow;
    this.#running = false;
  }

  /** The vCPUs run again: the clock moves on from where it stood. */
  start(hostNow: number): void {
    if (this.#running) return;
    this.#anchorHost = hostNow;
    this.#running = true;
  }

  /** The guest agent steps the clock to `guestMs`. */
  set(hostNow: number, guestMs: number): void {
    this.#anchorHost = hostNow;
    this.#anchorGuest = guestMs;
  }
}
