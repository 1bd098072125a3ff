/**
 * True when an `If-None-Match` header matches `etag` (a quoted strong tag we issued). Uses the weak
 * comparison RFC 9110 prescribes for If-None-Match; `*` matches. Values clients send before they
 * have a tag, such as `0` or `null`, match nothing.
 */
export function ifNoneMatchMatches(header: string, etag: string): boolean {
  const value = header.trim();
  if (value === '*') return true;
  for (const part of value.split(',')) {
    let tag = part.trim();
    if (tag.startsWith('W/')) tag = tag.slice(2);
    if (tag === etag) return true;
  }
  return false;
}

/** FNV-1a, 32 bits, as 8 hex digits: distinguishes scopes inside an ETag (not for security). */
export function fnv1aHex(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}
