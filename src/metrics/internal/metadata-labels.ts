/**
 * Label values for metadata requests. Paths and methods come from guests, so they are folded into
 * a fixed set here: a guest probing random paths or inventing methods cannot create series.
 */
export const METADATA_ENDPOINTS = ['scheduledevents', 'instance', 'versions', 'metadata', 'other'] as const;
/** The `endpoint` label of metadata requests. */
export type MetadataEndpoint = (typeof METADATA_ENDPOINTS)[number];

/** Methods counted by name; any other is `other`. */
export const METADATA_METHODS = ['GET', 'POST', 'other'] as const;
/** The `method` label of metadata requests. */
export type MetadataMethod = (typeof METADATA_METHODS)[number];

/**
 * The endpoint that served a path, as the metadata app routes it (case-sensitive, one trailing slash
 * ignored): `/metadata/instance/compute/name` is `instance`, `/metadata` alone is `metadata`.
 */
export function metadataEndpointOf(path: string): MetadataEndpoint {
  // Hono without `strict` drops one trailing slash before routing.
  const trimmed = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  switch (trimmed) {
    case '/metadata/scheduledevents':
      return 'scheduledevents';
    case '/metadata/instance':
      return 'instance';
    case '/metadata/versions':
      return 'versions';
    case '/metadata':
      return 'metadata';
    default:
      return trimmed.startsWith('/metadata/instance/') ? 'instance' : 'other';
  }
}

/** `GET` or `POST` as sent (HTTP methods are case-sensitive), anything else `other`. */
export function metadataMethodOf(method: string): MetadataMethod {
  return method === 'GET' || method === 'POST' ? method : 'other';
}
