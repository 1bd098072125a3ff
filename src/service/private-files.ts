import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { chmod, lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IntermissionError } from '../domain/index.js';

/**
 * Files and directories that only the user running Intermission may read or change: the state
 * directory (store, tokens, control.json), the run directory of `up --qemu` (sockets, QEMU records)
 * and what is written in them. Everything here refuses to follow a symlink another user planted.
 */

/** Mode of a private directory: another user can neither list it nor plant a file in it. */
export const PRIVATE_DIR_MODE = 0o700;
/** Mode of a private file (tokens, control.json, the database, unix sockets). */
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Flags of a temporary file: created here or not at all (`O_EXCL`: a file or a symlink planted at
 * the name makes the open fail instead of writing through it) and never through a symlink.
 */
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

const currentUid = (): number | undefined => process.getuid?.();

function describeOwner(stats: Stats): string {
  return `uid ${stats.uid}`;
}

/** Checks what lstat saw at a private directory; returns whether its mode needs repairing. */
function checkDir(path: string, stats: Stats): boolean {
  if (stats.isSymbolicLink()) {
    throw new IntermissionError('INVALID_INPUT', `${path} is a symlink: a private directory must be a real directory`, {
      details: { path, reason: 'SYMLINK' },
    });
  }
  if (!stats.isDirectory()) {
    throw new IntermissionError('INVALID_INPUT', `${path} is not a directory`, {
      details: { path, reason: 'NOT_DIR' },
    });
  }
  const uid = currentUid();
  if (uid !== undefined && stats.uid !== uid) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `${path} belongs to ${describeOwner(stats)}, not to this user (uid ${uid}): refusing to keep private files there; remove it or choose another directory`,
      { details: { path, reason: 'FOREIGN_OWNER', owner: stats.uid } },
    );
  }
  return (stats.mode & 0o777) !== PRIVATE_DIR_MODE;
}

/**
 * Creates `path` (and missing parents) as a private directory, or checks an existing one: it must
 * be a real directory (not a symlink) owned by this user. A looser mode is repaired to 0700 on every
 * call, so that a directory whose mode was changed since it was created is private again.
 *
 * @throws IntermissionError `INVALID_INPUT` for a symlink, a non-directory or another user's directory
 */
export async function ensurePrivateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (checkDir(path, await lstat(path))) await chmod(path, PRIVATE_DIR_MODE);
}

/** {@link ensurePrivateDir}, synchronously. */
export function ensurePrivateDirSync(path: string): void {
  mkdirSync(path, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (checkDir(path, lstatSync(path))) chmodSync(path, PRIVATE_DIR_MODE);
}

/** A temporary name beside `path` that nobody can guess in advance. */
function temporaryName(path: string): string {
  return `${path}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`;
}

/**
 * Writes a file so that a crash leaves either the old or the new content, never a torn one: the
 * content goes to a new temporary file (unguessable name, `O_EXCL | O_NOFOLLOW`, mode `mode`),
 * which is synced and renamed over `path`. A symlink at `path` is replaced, never written through.
 * The directory is created if missing (mode 0700); check it with {@link ensurePrivateDir}.
 */
export async function writePrivateFile(path: string, content: string, mode = PRIVATE_FILE_MODE): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: PRIVATE_DIR_MODE });
  const tmp = temporaryName(path);
  const handle = await open(tmp, CREATE_NEW, mode);
  try {
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
}

/** {@link writePrivateFile}, synchronously. */
export function writePrivateFileSync(path: string, content: string, mode = PRIVATE_FILE_MODE): void {
  mkdirSync(dirname(path), { recursive: true, mode: PRIVATE_DIR_MODE });
  const tmp = temporaryName(path);
  const fd = openSync(tmp, CREATE_NEW, mode);
  try {
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (error) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw error;
  }
}

/**
 * Sets the mode of `path` (a socket, the database and its -wal/-shm files) when it exists. A
 * symlink is refused rather than followed; a missing file is fine (e.g. no -wal yet).
 */
export async function restrictMode(path: string, mode = PRIVATE_FILE_MODE): Promise<void> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (stats.isSymbolicLink()) {
    throw new IntermissionError('INVALID_INPUT', `${path} is a symlink: refusing to change the mode of its target`, {
      details: { path, reason: 'SYMLINK' },
    });
  }
  if ((stats.mode & 0o777) !== mode) await chmod(path, mode);
}

/**
 * Whether a file may be trusted to say where to send a secret: it and its directory are not
 * symlinks, belong to this user, and are not writable by group or others. Throws with the reason
 * when not.
 *
 * @throws IntermissionError `INVALID_INPUT` (details.reason: `SYMLINK`, `FOREIGN_OWNER`, `LOOSE_MODE`)
 */
export async function assertTrustedFile(path: string): Promise<void> {
  const uid = currentUid();
  for (const [what, target] of [
    ['file', path],
    ['directory', dirname(path)],
  ] as const) {
    const stats = await lstat(target);
    const refuse = (reason: string, why: string): never => {
      throw new IntermissionError('INVALID_INPUT', `not trusting ${path}: its ${what} ${target} ${why}`, {
        details: { path, reason },
      });
    };
    if (stats.isSymbolicLink()) refuse('SYMLINK', 'is a symlink');
    if (uid !== undefined && stats.uid !== uid)
      refuse('FOREIGN_OWNER', `belongs to uid ${stats.uid}, not to you (uid ${uid})`);
    if ((stats.mode & 0o022) !== 0) {
      refuse('LOOSE_MODE', `is writable by group or others (mode ${(stats.mode & 0o777).toString(8)})`);
    }
  }
}

/**
 * Makes an SQLite database private before it is opened: creates the file with mode 0600 if it is
 * missing (SQLite gives its -wal and -shm files the database's mode) and repairs the mode of the
 * database and of existing -wal/-shm files.
 */
export async function preparePrivateDatabase(path: string): Promise<void> {
  const handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, PRIVATE_FILE_MODE);
  await handle.close();
  for (const p of [path, `${path}-wal`, `${path}-shm`]) await restrictMode(p);
}
