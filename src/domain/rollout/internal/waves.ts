/**
 * Wave and batch building: plain arrays and typed arrays over integer ids, so that 10,000 hosts and
 * 250,000 VMs take milliseconds. Pure and deterministic: the result depends only on the order of
 * the input (the planner sorts by name first).
 */

/** A host as wave building sees it. */
export interface WaveHost {
  /**
   * Flat pairs `[set, updateDomain, set, updateDomain, …]`, one pair per availability set that has
   * VMs on the host, sets as integer ids from 0. Empty for a host with no set VMs (a free host).
   */
  readonly constraints: readonly number[];
}

/** Where each host goes. */
export interface WaveAssignment {
  /** Wave index of each input host. */
  readonly waveOf: Int32Array;
  readonly waveCount: number;
  /** Per wave, the update domain of each set in maintenance (-1: the set is not touched). */
  readonly domains: readonly Int32Array[];
}

/**
 * Assigns hosts to waves so that, in every wave, each availability set has at most one update
 * domain: two hosts conflict when they hold VMs of the same set in different update domains. This
 * is graph colouring, solved greedily by up to two strategies; the second runs only when the first
 * needs more waves than the lower bound, and wins only with fewer waves, so the result stays
 * deterministic:
 *
 * - **Agree** (best on fleets placed by update domain): hosts are visited breadth-first over shared
 *   (set, update domain) pairs, from the first unvisited host in input order, so each host meets
 *   the wave of hosts it agrees with. A host joins the fitting wave that agrees with most of its
 *   pairs (lowest index on ties). It opens a new wave when none fits, or when none agrees with any
 *   pair while there are fewer waves than the lower bound (the most update domains of one set):
 *   joining an unrelated wave would pin that wave's sets to chance domains.
 * - **Most constrained first** (best on scattered placements): the same visit order, stably sorted
 *   by the number of sets on the host, descending; each host takes the first wave that fits.
 *
 * Hosts without set VMs have no constraint; each then goes to the wave with the fewest hosts.
 * Cost: O(hosts × waves × sets per host) per strategy, linear for the rest.
 */
export function assignWaves(hosts: readonly WaveHost[], setCount: number): WaveAssignment {
  const { ids, pairCount, lowerBound } = pairIds(hosts);
  const visit = visitOrder(hosts, ids, pairCount);
  const agree = colour(hosts, setCount, visit, lowerBound);
  let best = agree;
  if (agree.domains.length > lowerBound) {
    // Not provably optimal: try the other strategy too.
    const constrainedFirst = [...visit].sort((a, b) => count(hosts, b) - count(hosts, a));
    const firstFit = colour(hosts, setCount, constrainedFirst, null);
    if (firstFit.domains.length < agree.domains.length) best = firstFit;
  }

  const { waveOf, domains } = best;
  const load = new Array<number>(domains.length).fill(0);
  for (const w of waveOf) if (w >= 0) load[w] = (load[w] as number) + 1;
  for (let h = 0; h < hosts.length; h++) {
    if (waveOf[h] !== -1) continue;
    if (domains.length === 0) {
      domains.push(new Int32Array(setCount).fill(-1));
      load.push(0);
    }
    let w = 0;
    for (let k = 1; k < load.length; k++) if ((load[k] as number) < (load[w] as number)) w = k;
    waveOf[h] = w;
    load[w] = (load[w] as number) + 1;
  }
  return { waveOf, waveCount: domains.length, domains };
}

function count(hosts: readonly WaveHost[], h: number): number {
  return (hosts[h] as WaveHost).constraints.length;
}

/**
 * Greedy colouring of the hosts in `order`. With a `lowerBound`, a host joins the fitting wave that
 * agrees with most of its pairs, and opens a new wave rather than join one that agrees with none
 * while there are fewer waves than the bound; without one, it takes the first wave that fits.
 */
function colour(
  hosts: readonly WaveHost[],
  setCount: number,
  order: readonly number[],
  lowerBound: number | null,
): { waveOf: Int32Array; domains: Int32Array[] } {
  const waveOf = new Int32Array(hosts.length).fill(-1);
  const domains: Int32Array[] = [];
  for (const h of order) {
    const pairs = (hosts[h] as WaveHost).constraints;
    let best = -1;
    let bestScore = -1;
    for (let w = 0; w < domains.length; w++) {
      const dom = domains[w] as Int32Array;
      let score = 0;
      let fits = true;
      for (let i = 0; i < pairs.length; i += 2) {
        const current = dom[pairs[i] as number] as number;
        if (current === -1) continue;
        if (current !== pairs[i + 1]) {
          fits = false;
          break;
        }
        score++;
      }
      if (fits && score > bestScore) {
        best = w;
        bestScore = score;
        // First fit takes the first; agreement on every pair cannot be beaten.
        if (lowerBound === null || score * 2 === pairs.length) break;
      }
    }
    if (best === -1 || (lowerBound !== null && bestScore === 0 && domains.length < lowerBound)) {
      best = domains.length;
      domains.push(new Int32Array(setCount).fill(-1));
    }
    const dom = domains[best] as Int32Array;
    for (let i = 0; i < pairs.length; i += 2) dom[pairs[i] as number] = pairs[i + 1] as number;
    waveOf[h] = best;
  }
  return { waveOf, domains };
}

/**
 * Constrained hosts, breadth-first over shared (set, update domain) pairs; roots and neighbours in
 * input order. Hosts that share a pair can always share a wave, so visiting them together lets each
 * next host find the wave of its neighbours instead of pinning an unrelated wave.
 */
function visitOrder(hosts: readonly WaveHost[], ids: readonly Int32Array[], pairCount: number): number[] {
  // Hosts of each pair, as a CSR adjacency: start offsets, then host ids.
  const start = new Int32Array(pairCount + 1);
  for (const list of ids) for (const p of list) start[p + 1] = (start[p + 1] as number) + 1;
  for (let p = 0; p < pairCount; p++) start[p + 1] = (start[p + 1] as number) + (start[p] as number);
  const members = new Int32Array(start[pairCount] as number);
  const fill = start.slice(0, pairCount);
  ids.forEach((list, h) => {
    for (const p of list) {
      members[fill[p] as number] = h;
      fill[p] = (fill[p] as number) + 1;
    }
  });

  const seen = new Uint8Array(hosts.length);
  const pairDone = new Uint8Array(pairCount);
  const order: number[] = [];
  for (let root = 0; root < hosts.length; root++) {
    if (seen[root] || (hosts[root] as WaveHost).constraints.length === 0) continue;
    seen[root] = 1;
    let head = order.length;
    order.push(root);
    while (head < order.length) {
      for (const p of ids[order[head++] as number] as Int32Array) {
        if (pairDone[p]) continue;
        pairDone[p] = 1;
        for (let k = start[p] as number; k < (start[p + 1] as number); k++) {
          const next = members[k] as number;
          if (!seen[next]) {
            seen[next] = 1;
            order.push(next);
          }
        }
      }
    }
  }
  return order;
}

/** Dense array sizes up to which pair ids are computed directly (set × width + update domain). */
const DIRECT_PAIR_IDS = 1 << 22;

/**
 * An integer id per (set, update domain) pair, each host's pair ids, and the lower bound on waves:
 * the most distinct update domains any one set has among the hosts.
 */
function pairIds(hosts: readonly WaveHost[]): { ids: Int32Array[]; pairCount: number; lowerBound: number } {
  let width = 1;
  let sets = 0;
  for (const host of hosts) {
    for (let i = 0; i < host.constraints.length; i += 2) {
      sets = Math.max(sets, (host.constraints[i] as number) + 1);
      width = Math.max(width, (host.constraints[i + 1] as number) + 1);
    }
  }
  const direct = sets * width <= DIRECT_PAIR_IDS;
  const dense = new Map<number, number>();
  const setOfPair: number[] = [];
  const ids = hosts.map((host) => {
    const out = new Int32Array(host.constraints.length / 2);
    for (let i = 0; i < host.constraints.length; i += 2) {
      const key = (host.constraints[i] as number) * width + (host.constraints[i + 1] as number);
      let id = direct ? key : dense.get(key);
      if (id === undefined) {
        dense.set(key, (id = dense.size));
        setOfPair.push(host.constraints[i] as number);
      }
      out[i / 2] = id;
    }
    return out;
  });
  const pairCount = direct ? sets * width : dense.size;
  // Distinct update domains per set.
  const domainsOfSet = new Int32Array(sets);
  const counted = new Uint8Array(pairCount);
  let lowerBound = 0;
  for (const list of ids) {
    for (const p of list) {
      if (counted[p]) continue;
      counted[p] = 1;
      const set = direct ? Math.floor(p / width) : (setOfPair[p] as number);
      const domains = (domainsOfSet[set] ?? 0) + 1;
      domainsOfSet[set] = domains;
      lowerBound = Math.max(lowerBound, domains);
    }
  }
  return { ids, pairCount, lowerBound };
}

/** A host step as batch packing sees it. */
export interface BatchItem {
  /** VMs the step pauses at once. */
  readonly pausedVms: number;
}

/**
 * Packs a wave's host steps, in the given order, into consecutive batches of at most `maxHosts`
 * steps and `maxPaused` paused VMs (`null`: no limit). Next-fit: a batch closes when the next step
 * does not fit. Returns the batch index of each item. The caller checks that no single item exceeds
 * `maxPaused`.
 */
export function packBatches(
  items: readonly BatchItem[],
  maxHosts: number | null,
  maxPaused: number | null,
): Int32Array {
  const batchOf = new Int32Array(items.length);
  let batch = 0;
  let hosts = 0;
  let paused = 0;
  items.forEach((item, i) => {
    const full =
      hosts > 0 &&
      ((maxHosts !== null && hosts + 1 > maxHosts) || (maxPaused !== null && paused + item.pausedVms > maxPaused));
    if (full) {
      batch++;
      hosts = 0;
      paused = 0;
    }
    hosts++;
    paused += item.pausedVms;
    batchOf[i] = batch;
  });
  return batchOf;
}
