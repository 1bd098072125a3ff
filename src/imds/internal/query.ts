import { MetadataRequestError } from '../errors.js';

/** The parsed query of a request: each name at most once (IMDS rejects repeated names). */
export type Query = ReadonlyMap<string, string>;

const EMPTY: Query = new Map();

/**
 * Parses the query string of `url`. Names and values are percent-decoded (`+` is a space, as in
 * forms); empty pairs (`a=1&&b=2`) are skipped; unknown names are kept and ignored by the caller.
 *
 * @throws MetadataRequestError `DUPLICATE_QUERY_PARAMETER` when a name repeats, `MALFORMED_QUERY`
 *   when a name or value is not valid percent-encoding
 */
export function parseQuery(url: string): Query {
  // A fragment ends the URL: a `?` behind a `#` starts no query (`/x#?api-version=…` has none).
  const hash = url.indexOf('#');
  const end = hash === -1 ? url.length : hash;
  const start = url.indexOf('?');
  if (start === -1 || start > end) return EMPTY;
  const search = url.slice(start + 1, end);
  if (search.length === 0) return EMPTY;
  const query = new Map<string, string>();
  for (const pair of search.split('&')) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    const name = decode(eq === -1 ? pair : pair.slice(0, eq));
    const value = eq === -1 ? '' : decode(pair.slice(eq + 1));
    if (query.has(name)) {
      throw new MetadataRequestError('DUPLICATE_QUERY_PARAMETER', { detail: `query parameter ${name} repeats` });
    }
    query.set(name, value);
  }
  return query;
}

function decode(text: string): string {
  if (text.indexOf('%') === -1 && text.indexOf('+') === -1) return text;
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch (cause) {
    throw new MetadataRequestError('MALFORMED_QUERY', { cause, detail: `cannot decode ${text}` });
  }
}
