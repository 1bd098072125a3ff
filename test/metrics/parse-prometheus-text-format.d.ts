/**
 * Types of `parse-prometheus-text-format` (CommonJS, untyped), as far as these tests use it. Its
 * output is prom2json's: values are strings; histograms and summaries are folded into `buckets`,
 * `quantiles`, `count` and `sum`.
 */
declare module 'parse-prometheus-text-format' {
  function parsePrometheusTextFormat(text: string): {
    name: string;
    help: string;
    /** Upper case: COUNTER, GAUGE, HISTOGRAM, SUMMARY or UNTYPED. */
    type: string;
    metrics: {
      value?: string;
      labels?: Record<string, string>;
      buckets?: Record<string, string>;
      quantiles?: Record<string, string>;
      count?: string;
      sum?: string;
    }[];
  }[];
  export = parsePrometheusTextFormat;
}
