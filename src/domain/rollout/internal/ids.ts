/**
 * Event ids derived from text: the same GUID as `derivedGuid` of the fleet module (FNV-1a with seeds
 * 1 to 4, version 4 layout), uppercase, hashed in one pass and written as one string. The planner
 * derives one per event, up to 250,000 for a region, where the general helper's intermediate
 * strings showed in profiles.
 */

/** Char codes of the uppercase hex digits. */
const HEX = Array.from({ length: 16 }, (_, n) => n.toString(16).toUpperCase().charCodeAt(0));
const DASH = 45;
const FOUR = 52;
/**
 * Scratch buffer for the 36 characters of a GUID. Shared, but safe: `format` fills and reads it in
 * one synchronous call, and nothing else touches it.
 */
const out = new Array<number>(36).fill(0);

/** Writes the low `digits` hex digits of `value`, most significant first, at `at`; returns the end. */
function put(value: number, digits: number, at: number): number {
  for (let k = digits - 1; k >= 0; k--) out[at++] = HEX[(value >>> (k * 4)) & 15] as number;
  return at;
}

/** The FNV-1a state of the four lanes after some text. */
type Lanes = readonly [number, number, number, number];

const START: Lanes = [(0x811c9dc5 ^ 1) >>> 0, (0x811c9dc5 ^ 2) >>> 0, (0x811c9dc5 ^ 3) >>> 0, (0x811c9dc5 ^ 4) >>> 0];

function hash(text: string, from: Lanes): Lanes {
  let [h1, h2, h3, h4] = from;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x01000193) >>> 0;
    h3 = Math.imul(h3 ^ c, 0x01000193) >>> 0;
    h4 = Math.imul(h4 ^ c, 0x01000193) >>> 0;
  }
  return [h1, h2, h3, h4];
}

/** An uppercase GUID derived from `text`; equal to `derivedGuid(text).toUpperCase()`. */
export function eventGuid(text: string): string {
  return format(hash(text, START));
}

/**
 * GUIDs of texts that share `prefix`, which is hashed once: `guidsAfter(p)(s)` equals
 * `eventGuid(p + s)`.
 */
export function guidsAfter(prefix: string): (suffix: string) => string {
  const state = hash(prefix, START);
  return (suffix) => format(hash(suffix, state));
}

function format([h1, h2, h3, h4]: Lanes): string {
  // The layout of derivedGuid over the 32 hex digits of h1..h4:
  // [0,8)-[8,12)-4[13,16)-(8 + low 2 bits of digit 16)[17,20)-[20,32).
  let p = put(h1, 8, 0);
  out[p++] = DASH;
  p = put(h2 >>> 16, 4, p);
  out[p++] = DASH;
  out[p++] = FOUR;
  p = put(h2 & 0xfff, 3, p);
  out[p++] = DASH;
  out[p++] = HEX[((h3 >>> 28) & 0x3) | 0x8] as number;
  p = put((h3 >>> 16) & 0xfff, 3, p);
  out[p++] = DASH;
  p = put(h3 & 0xffff, 4, p);
  put(h4, 8, p);
  return String.fromCharCode(...out);
}
