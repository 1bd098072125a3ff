import type { ApproveResult, ScopeDocument, Vm } from '../domain/index.js';

/**
 * What the metadata service needs from the rest of the system. The service knows the calling VM
 * from the channel the request came through (never from anything the guest sends) and asks this
 * backend about that VM only.
 */
export interface MetadataBackend {
  /** The VM's instance facts, or undefined when the VM is not (or no longer) in the fleet. */
  vm(vmName: string): Vm | undefined;
  /** The document of the VM's scope (its availability set, or itself when standalone). */
  document(vmName: string): ScopeDocument;
  /** Approves events on behalf of the VM; resolves once the approval is durable. */
  approve(vmName: string, eventIds: readonly string[]): Promise<ApproveResult>;
  /** Records that the VM read its scheduled events (health gates look at this). */
  recordPoll(vmName: string, at: number): void;
  /** The current time, milliseconds since the epoch (injected for tests). */
  now(): number;
}
