import { readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';

/** A decoded PNG: 8-bit RGBA pixels, row by row. */
export interface Image {
  readonly width: number;
  readonly height: number;
  readonly rgba: Uint8Array;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Decodes the PNGs a browser writes: 8-bit truecolor (RGB or RGBA) or grey, not interlaced. Enough
 * to check screenshots without an image library.
 */
export function decodePng(data: Buffer): Image {
  if (!data.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG');
  let offset = 8;
  let width = 0;
  let height = 0;
  let colorType = -1;
  const idat: Buffer[] = [];
  while (offset < data.length) {
    const length = data.readUInt32BE(offset);
    const type = data.toString('latin1', offset + 4, offset + 8);
    const body = data.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const depth = body[8];
      colorType = body[9] ?? -1;
      if (depth !== 8 || body[12] !== 0) throw new Error(`unsupported PNG: depth ${depth}, interlace ${body[12]}`);
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
    offset += 12 + length;
  }
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType];
  if (channels === undefined) throw new Error(`unsupported PNG color type ${colorType}`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = pixels.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? pixels.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? (out[x - channels] ?? 0) : 0;
      const b = prev[x] ?? 0;
      const c = x >= channels ? (prev[x - channels] ?? 0) : 0;
      const v = line[x] ?? 0;
      let predicted: number;
      switch (filter) {
        case 0:
          predicted = 0;
          break;
        case 1:
          predicted = a;
          break;
        case 2:
          predicted = b;
          break;
        case 3:
          predicted = (a + b) >> 1;
          break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default:
          throw new Error(`bad PNG filter ${filter}`);
      }
      out[x] = (v + predicted) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const s = i * channels;
    const grey = channels <= 2;
    rgba[i * 4] = pixels[s] ?? 0;
    rgba[i * 4 + 1] = grey ? (pixels[s] ?? 0) : (pixels[s + 1] ?? 0);
    rgba[i * 4 + 2] = grey ? (pixels[s] ?? 0) : (pixels[s + 2] ?? 0);
    rgba[i * 4 + 3] = channels === 4 ? (pixels[s + 3] ?? 255) : channels === 2 ? (pixels[s + 1] ?? 255) : 255;
  }
  return { width, height, rgba };
}

/** Reads and decodes a PNG file. */
export function readPng(path: string): Image {
  return decodePng(readFileSync(path));
}

/** What a screenshot shows, in numbers a test can hold to account. */
export interface ImageStats {
  /** Standard deviation of luminance (0-255): about 0 for a blank image. */
  readonly luminanceStdDev: number;
  /** Distinct colors, quantized to 4 bits per channel. */
  readonly colors: number;
  /** Share of pixels of the most common color (the background). */
  readonly dominantShare: number;
}

/** Luminance spread, color count and background share of an image. */
export function imageStats(image: Image): ImageStats {
  const n = image.width * image.height;
  let sum = 0;
  let sumSq = 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const r = image.rgba[i * 4] ?? 0;
    const g = image.rgba[i * 4 + 1] ?? 0;
    const b = image.rgba[i * 4 + 2] ?? 0;
    const l = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    sum += l;
    sumSq += l * l;
    const key = ((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const mean = sum / n;
  return {
    luminanceStdDev: Math.sqrt(Math.max(0, sumSq / n - mean * mean)),
    colors: counts.size,
    dominantShare: Math.max(...counts.values()) / n,
  };
}

/** How many pixels are within `tolerance` (per channel) of an RGB color. */
export function countColor(image: Image, [r, g, b]: readonly [number, number, number], tolerance = 12): number {
  let count = 0;
  for (let i = 0; i < image.width * image.height; i++) {
    if (
      Math.abs((image.rgba[i * 4] ?? 0) - r) <= tolerance &&
      Math.abs((image.rgba[i * 4 + 1] ?? 0) - g) <= tolerance &&
      Math.abs((image.rgba[i * 4 + 2] ?? 0) - b) <= tolerance
    )
      count++;
  }
  return count;
}
