import type { IntermissionMetrics } from './metrics.js';

/** Methods the metrics endpoint serves. */
const ALLOWED_METHODS = 'GET, HEAD';

/**
 * A fetch handler serving the Prometheus text exposition of `metrics`, for any path it is mounted
 * on: `app.get('/metrics', (c) => handler(c.req.raw))` in Hono, or a plain `fetch` listener. GET
 * and HEAD answer 200 with the registry's Content-Type and `Cache-Control: no-store`; other methods
 * 405 with `Allow`; a failure to collect answers 500 without details.
 */
export function metricsHandler(
  metrics: Pick<IntermissionMetrics, 'render' | 'contentType'>,
): (request: Request) => Promise<Response> {
  return async (request) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return new Response('Method not allowed\n', {
        status: 405,
        headers: { allow: ALLOWED_METHODS, 'content-type': 'text/plain; charset=utf-8' },
      });
    }
    let body: string;
    try {
      body = await metrics.render();
    } catch {
      return new Response('Metrics could not be collected\n', {
        status: 500,
        headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' },
      });
    }
    return new Response(request.method === 'HEAD' ? null : body, {
      status: 200,
      headers: { 'content-type': metrics.contentType, 'cache-control': 'no-store' },
    });
  };
}
