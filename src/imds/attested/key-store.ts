import { X509Certificate, createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { IntermissionError } from '../../domain/index.js';
import { createCertificate, generateSigningKey, importSigningKey, parseCertificate, signCms } from './cms.js';
import type { AttestationSigner } from './signer.js';

/** The folder in the state directory that holds the key (0700). */
export const ATTESTATION_DIR = 'attestation';
/** The private key, PKCS#8 PEM, mode 0600. */
export const ATTESTATION_KEY_FILE = 'key.pem';
/** The self-signed certificate, PEM: what operators hand to verifiers. */
export const ATTESTATION_CERT_FILE = 'cert.pem';
/**
 * How long the certificate is valid: 10 years. The key is per deployment and kept; rotating it
 * means removing the folder (verifiers then need the new certificate).
 */
export const CERTIFICATE_VALIDITY_MS = 10 * 365 * 24 * 60 * 60 * 1000;

/** Options of {@link openAttestationKey}. */
export interface OpenAttestationKeyOptions {
  /** The state directory; the key lives in `<stateDir>/attestation/`. */
  readonly stateDir: string;
  /** The current time, for a new certificate's validity. Default: `Date.now`. */
  readonly now?: () => number;
}

/**
 * Opens the deployment's attestation key, or creates it on first start: an RSA 2048 key and a
 * self-signed certificate, written into a fresh private folder that is then renamed into place (so
 * that two processes starting at once agree on one key, and a crash leaves no half-written key).
 *
 * Every open refuses a symlinked folder or file (O_NOFOLLOW, lstat), a folder or key owned by another
 * user, and a key that does not match the certificate; it puts the modes back to 0700 (folder) and
 * 0600 (key) if they were loosened.
 *
 * @throws IntermissionError `INVALID_INPUT` for any of those refusals
 */
export async function openAttestationKey(options: OpenAttestationKeyOptions): Promise<AttestationSigner> {
  const dir = join(options.stateDir, ATTESTATION_DIR);
  if (!(await exists(dir))) await create(options.stateDir, dir, options.now ?? Date.now);
  return load(dir);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

async function create(stateDir: string, dir: string, now: () => number): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const keys = await generateSigningKey();
  const t = now();
  const certificate = await createCertificate({
    keys,
    commonName: `Intermission attested metadata ${randomBytes(4).toString('hex')}`,
    serial: randomBytes(16),
    notBefore: new Date(t - 60 * 60 * 1000), // an hour back: a verifier's clock may lag
    notAfter: new Date(t + CERTIFICATE_VALIDITY_MS),
  });
  const pkcs8 = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const staging = await mkdtemp(join(stateDir, '.attestation-')); // 0700
  try {
    await writeNew(join(staging, ATTESTATION_KEY_FILE), pem('PRIVATE KEY', pkcs8), 0o600);
    await writeNew(join(staging, ATTESTATION_CERT_FILE), pem('CERTIFICATE', certificate), 0o644);
    await rename(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    const code = (error as NodeJS.ErrnoException).code;
    // Another process put its key in place first: use that one.
    if (code === 'EEXIST' || code === 'ENOTEMPTY') return;
    throw error;
  }
}

async function load(dir: string): Promise<AttestationSigner> {
  const info = await lstat(dir);
  if (!info.isDirectory()) {
    throw new IntermissionError('INVALID_INPUT', `${dir} is not a directory (a symlink is refused)`);
  }
  requireOwner(dir, info.uid);
  if ((info.mode & 0o077) !== 0) {
    const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    await handle.chmod(0o700).finally(() => handle.close());
  }
  const keyPem = await readPrivate(join(dir, ATTESTATION_KEY_FILE), 0o600);
  const certPem = await readPrivate(join(dir, ATTESTATION_CERT_FILE), undefined);
  let certDer: Uint8Array;
  let keyDer: Uint8Array;
  try {
    const x509 = new X509Certificate(certPem);
    const privateKey = createPrivateKey(keyPem);
    const derived = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    if (!derived.equals(x509.publicKey.export({ type: 'spki', format: 'der' }))) {
      throw new Error('the key does not match the certificate');
    }
    certDer = new Uint8Array(x509.raw);
    keyDer = new Uint8Array(privateKey.export({ type: 'pkcs8', format: 'der' }));
  } catch (cause) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `${dir} holds no usable attestation key (${cause instanceof Error ? cause.message : String(cause)}); move it away to create a new one`,
      { cause },
    );
  }
  const key = await importSigningKey(keyDer);
  const certificate = parseCertificate(certDer);
  const x509 = new X509Certificate(certPem);
  return {
    certificatePem: pem('CERTIFICATE', certDer),
    fingerprint256: x509.fingerprint256,
    sign: (content) => signCms({ content, key, certificate }),
  };
}

/**
 * Reads a file without following a symlink, refusing one that is not a regular file of ours; with
 * `mode`, tightens a looser mode back to it.
 */
async function readPrivate(path: string, mode: number | undefined): Promise<string> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'is a symlink' : code === 'ENOENT' ? 'is missing' : `cannot be read (${code})`;
    throw new IntermissionError('INVALID_INPUT', `${path} ${why}; move the folder away to create a new key`, {
      cause,
    });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new IntermissionError('INVALID_INPUT', `${path} is not a regular file`);
    requireOwner(path, info.uid);
    if (mode !== undefined && (info.mode & 0o777) !== mode) await handle.chmod(mode);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

function requireOwner(path: string, uid: number): void {
  const me = process.getuid?.();
  if (me !== undefined && uid !== me) {
    throw new IntermissionError('INVALID_INPUT', `${path} belongs to uid ${uid}, not to this process (uid ${me})`);
  }
}

/** Creates a file that must not exist yet (O_EXCL, O_NOFOLLOW), writes it and syncs it. */
async function writeNew(path: string, content: string, mode: number): Promise<void> {
  const handle = await open(
    path,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    mode,
  );
  try {
    await handle.writeFile(content);
    await handle.chmod(mode); // the umask may have taken bits away from 0644
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
