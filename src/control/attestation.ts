import { Hono } from 'hono';
import { IntermissionError } from '../domain/index.js';
import type { AttestationSigner } from '../imds/index.js';
import type { Principal } from './tokens.js';

/** What the control API shows of the attestation key: its certificate, never the key. */
export type AttestationCertificate = Pick<AttestationSigner, 'certificatePem' | 'fingerprint256'>;

/** Where operators fetch the certificate that verifies `/metadata/attested/document` signatures. */
export const ATTESTATION_CERTIFICATE_PATH = '/attestation/certificate';

type Env = { Variables: { principal: Principal } };

/**
 * `GET /v1/attestation/certificate` (operators only): the deployment's attestation certificate as
 * PEM (`application/x-pem-file`), with its SHA-256 fingerprint in `X-Certificate-SHA256`. A verifier
 * uses it as the trust anchor: `openssl cms -verify -inform DER -in sig.der -CAfile cert.pem`.
 * Mounted under /v1, behind the token check. Without a key the route answers 404.
 */
export function attestationRoutes(attestation: AttestationCertificate | undefined): Hono<Env> {
  const app = new Hono<Env>();
  app.get(ATTESTATION_CERTIFICATE_PATH, (c) => {
    if (c.get('principal').role !== 'operator') {
      throw new IntermissionError('UNAUTHORIZED', 'the attestation certificate is for operators');
    }
    if (attestation === undefined) {
      throw new IntermissionError('NOT_FOUND', 'this server signs no attested documents');
    }
    return c.body(attestation.certificatePem, 200, {
      'content-type': 'application/x-pem-file',
      'x-certificate-sha256': attestation.fingerprint256,
    });
  });
  return app;
}
