import type { Vm } from '../../domain/index.js';
import { MetadataRequestError } from '../errors.js';
import type { InstanceApiVersion } from '../versions.js';

/**
 * The attested document: what `/metadata/attested/document` signs (IMDS-doc "Attested data").
 * Keys in Azure's (alphabetical) order, as every captured document shows them. `licenseType` is
 * left out: Azure shows it only for VMs with Azure Hybrid Benefit, which our fleet does not model.
 */
export interface AttestedDocument {
  readonly nonce: string;
  readonly plan: { readonly name: string; readonly product: string; readonly publisher: string };
  /** Since 2019-11-01. */
  readonly sku?: string;
  /** Since 2019-04-30. */
  readonly subscriptionId?: string;
  readonly timeStamp: { readonly createdOn: string; readonly expiresOn: string };
  readonly vmId: string;
}

/** The first api-version that serves `/metadata/attested` (IMDS-doc endpoint categories). */
export const ATTESTED_SINCE = '2018-10-01';
/**
 * How long a signed document is valid: 6 hours, as IMDS-doc's sample result shows (created 00:16:17,
 * expires 06:16:17) and azure-docs#43938 reports ("typically after 6 hours"). Long enough for a guest
 * whose clock lags after a pause to still accept it; the nonce is what stops a replay.
 */
export const ATTESTED_VALIDITY_MS = 6 * 60 * 60 * 1000;
/** Longest nonce: SWAGGER says "a string of up to 32 random alphanumeric characters". */
export const MAX_NONCE_LENGTH = 32;

/**
 * Letters and digits (SWAGGER), plus `-`, which IMDS's own default nonce (`20201130-211924`) has, so
 * a client may send back what it was given. Nothing that could break out of the JSON or a log line.
 */
const NONCE = /^[A-Za-z0-9-]+$/;

/** True when the version serves the attested endpoint. */
export function servesAttested(version: InstanceApiVersion): boolean {
  return version >= ATTESTED_SINCE;
}

/**
 * The nonce to sign: the one given, or, as IMDS does when none is given, the current UTC time as
 * `YYYYMMDD-HHMMSS` (IMDS-doc: "If no nonce was supplied, the current Coordinated Universal Time
 * timestamp is used"; its examples show `20201130-211924`). An empty `nonce=` counts as none.
 *
 * @throws MetadataRequestError `INVALID_NONCE` for a nonce longer than 32 characters or with other
 *   characters than letters, digits and `-`
 */
export function attestedNonce(given: string | undefined, now: number): string {
  if (given === undefined || given.length === 0) return defaultNonce(now);
  if (given.length > MAX_NONCE_LENGTH || !NONCE.test(given)) {
    throw new MetadataRequestError('INVALID_NONCE', { detail: `nonce of ${given.length} characters refused` });
  }
  return given;
}

/**
 * The document `vm` gets at `version`: fields appear from the version that introduced them
 * (IMDS-doc table: subscriptionId 2019-04-30, sku 2019-11-01). Facts the fleet does not hold (the
 * image's sku and plan) are `""`, as in the instance document.
 */
export function attestedDocument(options: {
  readonly vm: Vm;
  readonly version: InstanceApiVersion;
  readonly nonce: string;
  readonly now: number;
  readonly validityMs?: number;
}): AttestedDocument {
  const { vm, version, nonce, now } = options;
  const validityMs = options.validityMs ?? ATTESTED_VALIDITY_MS;
  return {
    nonce,
    plan: { name: '', product: '', publisher: '' },
    ...(version >= '2019-11-01' ? { sku: '' } : {}),
    ...(version >= '2019-04-30' ? { subscriptionId: vm.instance.subscriptionId } : {}),
    timeStamp: { createdOn: attestedTime(now), expiresOn: attestedTime(now + validityMs) },
    vmId: vm.vmId,
  };
}

/** IMDS's timestamp format, UTC: `MM/DD/YY HH:MM:SS -0000` (`11/30/20 21:19:19 -0000`). */
export function attestedTime(ms: number): string {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) throw new RangeError(`not a time: ${ms}`);
  const p = (n: number): string => String(n).padStart(2, '0');
  const yy = p(d.getUTCFullYear() % 100);
  return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${yy} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} -0000`;
}

function defaultNonce(now: number): string {
  const iso = new Date(now).toISOString(); // 2020-11-30T21:19:24.000Z
  return `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
}
