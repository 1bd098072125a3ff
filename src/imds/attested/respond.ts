import type { Vm } from '../../domain/index.js';
import type { InstanceApiVersion } from '../versions.js';
import { attestedDocument, attestedNonce } from './document.js';
import type { AttestationSigner } from './signer.js';

/** The body of `GET /metadata/attested/document`: `{"encoding":"pkcs7","signature":"<base64>"}`. */
export interface AttestedResponse {
  readonly encoding: 'pkcs7';
  readonly signature: string;
}

/**
 * Builds and signs the attested document of `vm`: the nonce checked (or IMDS's default), the JSON
 * in Azure's compact form and key order, signed as PKCS#7 and base64-encoded.
 *
 * @throws MetadataRequestError `INVALID_NONCE` for a nonce that is refused
 */
export async function attestedResponse(options: {
  readonly signer: AttestationSigner;
  readonly vm: Vm;
  readonly version: InstanceApiVersion;
  readonly nonce: string | undefined;
  readonly now: number;
}): Promise<AttestedResponse> {
  const { vm, version, now } = options;
  const doc = attestedDocument({ vm, version, now, nonce: attestedNonce(options.nonce, now) });
  const der = await options.signer.sign(new TextEncoder().encode(JSON.stringify(doc)));
  return { encoding: 'pkcs7', signature: Buffer.from(der).toString('base64') };
}
