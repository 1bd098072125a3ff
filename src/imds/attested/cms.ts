import { webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

/**
 * PKCS#7 / CMS through pkijs (PeculiarVentures) over Node's WebCrypto: pkijs builds and parses the
 * ASN.1 (we write none by hand), and the RSA operation runs in Node's OpenSSL in libuv's thread pool
 * (WebCrypto is asynchronous). node-forge would do the RSA arithmetic in JavaScript on the event
 * loop, the one the scheduled-events path runs on. Measured here: about 1 ms of CPU per document,
 * 10 ms wall.
 */

/** Node's WebCrypto private key, as `crypto.subtle` returns it. */
export type AttestationPrivateKey = webcrypto.CryptoKey;

/** RSASSA-PKCS1-v1_5 with SHA-256: what Azure's documents use (sha256 digest, rsaEncryption). */
export const SIGNING_ALGORITHM = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const ID_DATA = '1.2.840.113549.1.7.1';
const ID_SIGNED_DATA = '1.2.840.113549.1.7.2';

/**
 * The engine pkijs calls for hashing and signing: Node's WebCrypto, passed explicitly, never set as a
 * global. pkijs's typings name the DOM's `Crypto` and `CryptoKey`, which this Node project does not
 * load, so its parameters are untyped here; our exported API is typed with Node's WebCrypto types.
 */
const engine = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto });

/** A new RSA 2048 key pair for signing (extractable, so that the private key can be stored). */
export async function generateSigningKey(): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(
    { ...SIGNING_ALGORITHM, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ['sign', 'verify'],
  );
}

/** Imports a PKCS#8 DER private key for signing only (not extractable again). */
export async function importSigningKey(pkcs8: Uint8Array): Promise<AttestationPrivateKey> {
  return webcrypto.subtle.importKey('pkcs8', pkcs8, SIGNING_ALGORITHM, false, ['sign']);
}

/** Options of {@link createCertificate}. */
export interface CertificateOptions {
  readonly keys: webcrypto.CryptoKeyPair;
  /** Subject and issuer common name. */
  readonly commonName: string;
  /** 16 random bytes: the serial number. */
  readonly serial: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * A self-signed X.509 v3 certificate for the attestation key: basicConstraints cA=false and
 * keyUsage digitalSignature + nonRepudiation (both critical), so that it is accepted for S/MIME
 * signing (`openssl cms -verify` checks that purpose) and can sign nothing else.
 *
 * @returns the certificate in DER
 */
export async function createCertificate(options: CertificateOptions): Promise<Uint8Array> {
  const cert = new pkijs.Certificate();
  cert.version = 2;
  const serial = Uint8Array.from(options.serial);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x40; // positive and of full length
  cert.serialNumber = new asn1js.Integer({ valueHex: serial });
  const commonName = (): pkijs.AttributeTypeAndValue =>
    new pkijs.AttributeTypeAndValue({ type: '2.5.4.3', value: new asn1js.Utf8String({ value: options.commonName }) });
  cert.subject.typesAndValues.push(commonName());
  cert.issuer.typesAndValues.push(commonName());
  cert.notBefore.value = options.notBefore;
  cert.notAfter.value = options.notAfter;
  await cert.subjectPublicKeyInfo.importKey(options.keys.publicKey, engine);
  const keyUsage = new asn1js.BitString({ valueHex: new Uint8Array([0xc0]).buffer, unusedBits: 6 });
  cert.extensions = [
    new pkijs.Extension({
      extnID: '2.5.29.19',
      critical: true,
      extnValue: new pkijs.BasicConstraints({ cA: false }).toSchema().toBER(false),
      parsedValue: new pkijs.BasicConstraints({ cA: false }),
    }),
    new pkijs.Extension({ extnID: '2.5.29.15', critical: true, extnValue: keyUsage.toBER(false) }),
  ];
  await cert.sign(options.keys.privateKey, 'SHA-256', engine);
  return new Uint8Array(cert.toSchema(true).toBER(false));
}

/** A parsed certificate: what the signer needs of it. */
export interface SigningCertificate {
  readonly der: Uint8Array;
  readonly parsed: pkijs.Certificate;
}

/** Parses a DER certificate. @throws Error when it is not one */
export function parseCertificate(der: Uint8Array): SigningCertificate {
  return { der, parsed: pkijs.Certificate.fromBER(der) };
}

/**
 * Signs `content` as a CMS SignedData (RFC 5652) of type id-data with the content embedded, the
 * signing certificate included, and no signed attributes: the shape of Azure's attested signature,
 * which `openssl smime -verify -inform DER` and .NET's `SignedCms` read.
 *
 * @returns the DER of the ContentInfo
 */
export async function signCms(options: {
  readonly content: Uint8Array;
  readonly key: AttestationPrivateKey;
  readonly certificate: SigningCertificate;
}): Promise<Uint8Array> {
  const cert = options.certificate.parsed;
  const signed = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({
      eContentType: ID_DATA,
      eContent: new asn1js.OctetString({ valueHex: Uint8Array.from(options.content).buffer }),
    }),
    signerInfos: [
      new pkijs.SignerInfo({
        version: 1,
        sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
      }),
    ],
    certificates: [cert],
  });
  await signed.sign(options.key, 0, 'SHA-256', undefined, engine);
  const info = new pkijs.ContentInfo({ contentType: ID_SIGNED_DATA, content: signed.toSchema(true) });
  return new Uint8Array(info.toSchema().toBER(false));
}
