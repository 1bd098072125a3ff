/**
 * Signs attested documents for the metadata service. The deployment's signer comes from
 * {@link openAttestationKey}; the app only needs this slice of it.
 */
export interface AttestationSigner {
  /** The certificate verifiers trust, PEM: served to operators at GET /v1/attestation/certificate. */
  readonly certificatePem: string;
  /** SHA-256 fingerprint of the certificate, `AB:CD:…`, for logs and for operators to compare. */
  readonly fingerprint256: string;
  /** Signs `content` as a PKCS#7/CMS SignedData with the content and certificate embedded; DER. */
  sign(content: Uint8Array): Promise<Uint8Array>;
}
