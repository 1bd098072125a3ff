/**
 * The guest's records (scripts/guest/recorder.sh) from the host's side: the acknowledgements on the
 * serial console (`REC ACK <seq>`, printed only after the record's fsync), the record file
 * (`R <seq> <payload> <crc>` lines, crc = CRC-32 of `<seq> <payload>` in 8 hex digits), its check,
 * and the file read back from a stopped VM's disk image without mounting it.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The sequence numbers acknowledged in a serial log, in the order printed. */
export function parseAcks(serial: string): number[] {
  const acks: number[] = [];
  for (const match of serial.matchAll(/^REC ACK (\d+)\r?$/gm)) acks.push(Number(match[1]));
  return acks;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 as zlib and busybox `crc32` compute it. */
export function crc32(data: string | Uint8Array): number {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** The verdict of {@link verifyRecords}. */
export interface RecordsVerdict {
  readonly ok: boolean;
  /** Valid records in the file. */
  readonly records: number;
  /** The first and last sequence numbers in the file (0 when empty). */
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** The highest acknowledged sequence number (0 when none). */
  readonly lastAcked: number;
  /** Whether the file ended in a torn or failing line after every acknowledged record (allowed). */
  readonly tornTail: boolean;
  readonly problems: readonly string[];
}

/**
 * Checks a record file against what was acknowledged: records numbered 1, 2, 3… without gap or
 * repeat, each whole and matching its checksum, and every acknowledged one there. Records after the
 * last acknowledged one may be missing, and the very last line may be torn (written, never
 * acknowledged, when the VM stopped); nothing before it may be.
 */
export function verifyRecords(text: string, acked: number | readonly number[]): RecordsVerdict {
  const acks = typeof acked === 'number' ? [acked] : acked;
  const problems: string[] = [];
  let lastAcked = 0;
  for (const seq of acks) {
    if (seq <= lastAcked) problems.push(`acknowledgement ${seq} after ${lastAcked}: not increasing`);
    lastAcked = Math.max(lastAcked, seq);
  }
  const lines = text.split('\n');
  const endsWithNewline = lines.at(-1) === '';
  if (endsWithNewline) lines.pop();
  let records = 0;
  let firstSeq = 0;
  let lastSeq = 0;
  let tornTail = false;
  lines.forEach((line, index) => {
    const isLast = index === lines.length - 1;
    const match = /^R (\d+) (\S+) ([0-9a-f]{8})$/.exec(line);
    const whole = !isLast || endsWithNewline;
    const valid =
      match !== null && whole && crc32(`${match[1]} ${match[2]}`).toString(16).padStart(8, '0') === match[3];
    if (!valid) {
      if (isLast && lastSeq >= lastAcked) {
        tornTail = true;
        return;
      }
      problems.push(`line ${index + 1} is torn or fails its checksum: ${JSON.stringify(line.slice(0, 80))}`);
      return;
    }
    const seq = Number(match[1]);
    if (seq !== lastSeq + 1) {
      problems.push(`line ${index + 1}: record ${seq} follows ${lastSeq} (${seq <= lastSeq ? 'repeat' : 'gap'})`);
    }
    if (records === 0) firstSeq = seq;
    lastSeq = seq;
    records++;
  });
  if (records > 0 && firstSeq !== 1) problems.push(`the first record is ${firstSeq}, not 1`);
  if (lastSeq < lastAcked) problems.push(`record ${lastAcked} was acknowledged; the file ends at ${lastSeq}`);
  return { ok: problems.length === 0, records, firstSeq, lastSeq, lastAcked, tornTail, problems };
}

/**
 * Reads /records.log from the `data` partition (partition 2) of a VM's disk (a qcow2 overlay or a
 * raw image), without mounting: the image is converted to a raw temporary file, the partition cut
 * out at the offset sfdisk reports, its journal replayed into that copy (an fsync'd record may be in
 * the journal only: debugfs does not read journals) and the file read with debugfs. Resolves to ''
 * when the file is not there.
 *
 * Works on a running VM's disk too (`qemu-img -U`: no image lock taken): a record the guest
 * acknowledged before the call was fsync'd, so QEMU flushed it to the image; later ones may be
 * missing or torn in the copy, which {@link verifyRecords} allows.
 */
export async function readRecordsFromImage(image: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'iq-records-'));
  try {
    const raw = join(dir, 'disk.raw');
    const part = join(dir, 'data.img');
    await run('qemu-img', ['convert', '-U', '-O', 'raw', image, raw]);
    const { stdout: table } = await run('sfdisk', ['--json', raw]);
    const parsed = JSON.parse(table) as { partitiontable?: { partitions?: { start: number; size: number }[] } };
    const data = parsed.partitiontable?.partitions?.[1];
    if (data === undefined) throw new Error(`${image} has no partition 2: ${table}`);
    await run('dd', [`if=${raw}`, `of=${part}`, 'bs=512', `skip=${data.start}`, `count=${data.size}`, 'status=none']);
    await run('e2fsck', ['-E', 'journal_only', '-y', part]).catch((error: { code?: number }) => {
      // 1: the file system was changed (the journal replayed); anything else is a failure.
      if (error.code !== 1) throw error;
    });
    const { stdout } = await run('debugfs', ['-R', 'cat /records.log', part], { maxBuffer: 256 * 1024 * 1024 });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
