import parsePrometheusTextFormat from 'parse-prometheus-text-format';

/**
 * Reads a Prometheus text exposition with a real parser (`parse-prometheus-text-format`) and checks
 * it: every family has exactly one HELP (non-empty) and one TYPE before its samples, every sample
 * belongs to a declared family, no sample is repeated, counters are finite and non-negative, and
 * every histogram series has cumulative buckets ending in `+Inf`, a `_count` equal to the `+Inf`
 * bucket and a finite `_sum`.
 *
 * The parser folds histograms into one `buckets` map per family and drops the `_sum` and `_count`
 * of labelled series (yunyu/parse-prometheus-text-format#13, fix in the unmerged PR #8). So it
 * reads the text twice: as given, for each family's name, HELP and TYPE; and with every TYPE
 * declared `untyped`, which makes it return each sample line as it is (name, labels, value), from
 * which histogram series are put together here.
 */
export class Exposition {
  readonly families: ReadonlyMap<string, Family>;

  private constructor(families: ReadonlyMap<string, Family>) {
    this.families = families;
  }

  /** Parses and validates; throws {@link ExpositionError} on the first problem. */
  static parse(text: string): Exposition {
    const { declared, sampleLines } = scanDeclarations(text);
    for (const family of parsePrometheusTextFormat(text)) {
      const mine = declared.get(family.name);
      if (!mine) {
        if (family.metrics.length > 0) throw new ExpositionError(`samples of ${family.name} have no HELP/TYPE`);
        continue;
      }
      if (family.help !== mine.help)
        throw new ExpositionError(`${family.name}: parser read HELP ${JSON.stringify(family.help)}`);
      if (family.type.toLowerCase() !== mine.type)
        throw new ExpositionError(`${family.name}: parser read TYPE ${family.type}`);
    }

    const samples = new Map<string, Sample[]>([...declared.keys()].map((name) => [name, []]));
    const seen = new Set<string>();
    const untyped = text.replace(/^# TYPE (\S+) \S+$/gm, '# TYPE $1 untyped');
    for (const entry of parsePrometheusTextFormat(untyped)) {
      for (const metric of entry.metrics) {
        if (metric.value === undefined) throw new ExpositionError(`${entry.name}: a sample without a value`);
        const sample: Sample = {
          name: entry.name,
          labels: metric.labels ?? {},
          value: toNumber(metric.value, entry.name),
        };
        const family = familyOf(sample.name, declared);
        if (family === undefined) throw new ExpositionError(`sample ${sample.name} belongs to no declared family`);
        const id = `${sample.name}${labelKey(sample.labels)}`;
        if (seen.has(id)) throw new ExpositionError(`sample ${id} appears twice`);
        seen.add(id);
        samples.get(family)?.push(sample);
      }
    }

    // The parser folds consecutive lines with the same labels into one sample: count the lines.
    if (seen.size !== sampleLines) throw new ExpositionError(`${sampleLines - seen.size} sample lines repeat another`);

    const families = new Map<string, Family>();
    for (const [name, { help, type }] of declared) {
      const own = samples.get(name) ?? [];
      if (type === 'counter') {
        for (const s of own) {
          if (!Number.isFinite(s.value) || s.value < 0)
            throw new ExpositionError(`counter ${name}${labelKey(s.labels)} is ${s.value}`);
        }
      }
      const histograms = type === 'histogram' ? assembleHistograms(name, own) : [];
      families.set(name, { name, help, type, samples: own, histograms });
    }
    return new Exposition(families);
  }

  /** The family called `name`; throws when there is none. */
  family(name: string): Family {
    const family = this.families.get(name);
    if (!family) throw new ExpositionError(`no family ${name}`);
    return family;
  }

  /** The value of the one sample of `name` whose labels are exactly `labels`. */
  value(name: string, labels: Readonly<Record<string, string>> = {}): number {
    const key = labelKey(labels);
    const found = this.family(name).samples.filter((s) => s.name === name && labelKey(s.labels) === key);
    if (found.length !== 1) throw new ExpositionError(`${found.length} samples ${name}${key}`);
    return (found[0] as Sample).value;
  }

  /** Every sample of a counter or gauge family, as `{labels → value}` keyed by their label set. */
  series(name: string): Map<string, number> {
    return new Map(this.family(name).samples.map((s) => [labelKey(s.labels), s.value]));
  }

  /** The histogram series of `name` whose labels (without `le`) are exactly `labels`. */
  histogram(name: string, labels: Readonly<Record<string, string>> = {}): HistogramSeries {
    const key = labelKey(labels);
    const found = this.family(name).histograms.find((h) => labelKey(h.labels) === key);
    if (!found) throw new ExpositionError(`no histogram series ${name}${key}`);
    return found;
  }
}

/** A parse or validation failure. */
export class ExpositionError extends Error {
  override readonly name = 'ExpositionError';
}

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface HistogramSeries {
  /** Labels of the series, `le` excluded. */
  readonly labels: Readonly<Record<string, string>>;
  /** Cumulative count by upper bound (`Infinity` for `+Inf`), in increasing order. */
  readonly buckets: ReadonlyMap<number, number>;
  readonly sum: number;
  readonly count: number;
}

export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly samples: readonly Sample[];
  readonly histograms: readonly HistogramSeries[];
}

/** A canonical text of a label set, e.g. `{path="pause",status="200"}` (sorted by name). */
export function labelKey(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
}

/** What `value` counts as cumulative histogram buckets: the number of `values` at most each bound. */
export function cumulativeBuckets(values: readonly number[], bounds: readonly number[]): Map<number, number> {
  return new Map([...bounds, Infinity].map((le) => [le, values.filter((v) => v <= le).length]));
}

const METRIC_TYPES: ReadonlySet<string> = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

/** HELP and TYPE of each family, checked to be unique, non-empty and ahead of the samples. */
function scanDeclarations(text: string): {
  declared: Map<string, { help: string; type: MetricType }>;
  sampleLines: number;
} {
  const help = new Map<string, string>();
  let sampleLines = 0;
  const types = new Map<string, MetricType>();
  const sampled = new Set<string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
    if (meta) {
      const [, kind, name = '', rest = ''] = meta;
      if (sampled.has(name)) throw new ExpositionError(`${kind} of ${name} after its samples`);
      if (kind === 'HELP') {
        if (help.has(name)) throw new ExpositionError(`two HELP lines for ${name}`);
        if (rest.trim() === '') throw new ExpositionError(`empty HELP for ${name}`);
        help.set(name, rest);
      } else {
        if (types.has(name)) throw new ExpositionError(`two TYPE lines for ${name}`);
        if (!METRIC_TYPES.has(rest)) throw new ExpositionError(`unknown TYPE ${rest} for ${name}`);
        types.set(name, rest as MetricType);
      }
      continue;
    }
    if (line.startsWith('#')) continue;
    const sampleName = NAME.exec(line)?.[0];
    if (sampleName === undefined) throw new ExpositionError(`not a sample line: ${line}`);
    const family = familyOf(sampleName, new Map([...types].map(([n, type]) => [n, { type }])));
    if (family === undefined || !help.has(family))
      throw new ExpositionError(`${sampleName} sampled before its HELP and TYPE`);
    sampled.add(family);
    sampleLines++;
  }
  const declared = new Map<string, { help: string; type: MetricType }>();
  for (const [name, type] of types) {
    const h = help.get(name);
    if (h === undefined) throw new ExpositionError(`${name} has a TYPE but no HELP`);
    declared.set(name, { help: h, type });
  }
  for (const name of help.keys()) if (!types.has(name)) throw new ExpositionError(`${name} has a HELP but no TYPE`);
  return { declared, sampleLines };
}

/** The family a sample name belongs to, with the suffixes its family's type allows. */
function familyOf(name: string, declared: ReadonlyMap<string, { readonly type: MetricType }>): string | undefined {
  const own = declared.get(name);
  if (own && own.type !== 'histogram') return name;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = declared.get(base)?.type;
    if (type === 'histogram' || (type === 'summary' && suffix !== '_bucket')) return base;
  }
  return undefined;
}

function assembleHistograms(name: string, samples: readonly Sample[]): HistogramSeries[] {
  const groups = new Map<
    string,
    { labels: Record<string, string>; buckets: [number, number][]; sum?: number; count?: number }
  >();
  const group = (labels: Record<string, string>) => {
    const key = labelKey(labels);
    let g = groups.get(key);
    if (!g) {
      g = { labels, buckets: [] };
      groups.set(key, g);
    }
    return g;
  };
  for (const s of samples) {
    if (s.name === `${name}_bucket`) {
      const { le, ...rest } = s.labels;
      if (le === undefined) throw new ExpositionError(`${name}_bucket without le`);
      group(rest).buckets.push([toNumber(le, `${name} le`), s.value]);
    } else if ('le' in s.labels) {
      throw new ExpositionError(`${s.name} carries le`);
    } else if (s.name === `${name}_sum`) {
      group({ ...s.labels }).sum = s.value;
    } else if (s.name === `${name}_count`) {
      group({ ...s.labels }).count = s.value;
    } else {
      throw new ExpositionError(`histogram ${name} has a plain sample ${s.name}`);
    }
  }
  let bounds: string | undefined;
  return [...groups.values()].map((g) => {
    const where = `${name}${labelKey(g.labels)}`;
    const buckets = [...g.buckets].sort((a, b) => a[0] - b[0]);
    const last = buckets[buckets.length - 1];
    if (!last || last[0] !== Infinity) throw new ExpositionError(`${where} has no +Inf bucket`);
    for (let i = 1; i < buckets.length; i++) {
      const [prevLe, prev] = buckets[i - 1] as [number, number];
      const [le, count] = buckets[i] as [number, number];
      if (le === prevLe) throw new ExpositionError(`${where} repeats bucket ${le}`);
      if (count < prev) throw new ExpositionError(`${where} bucket ${le} (${count}) below bucket ${prevLe} (${prev})`);
    }
    if (g.count === undefined || g.sum === undefined) throw new ExpositionError(`${where} lacks _count or _sum`);
    if (g.count !== last[1])
      throw new ExpositionError(`${where} _count ${g.count} differs from +Inf bucket ${last[1]}`);
    if (!Number.isFinite(g.sum)) throw new ExpositionError(`${where} _sum is ${g.sum}`);
    const les = buckets.map(([le]) => le).join(',');
    if (bounds !== undefined && bounds !== les)
      throw new ExpositionError(`${where} has other buckets than its siblings`);
    bounds = les;
    return { labels: g.labels, buckets: new Map(buckets), sum: g.sum, count: g.count };
  });
}

/** A sample value as Prometheus reads it (Go's ParseFloat: `NaN`, `Inf` in any letter case). */
function toNumber(text: string, where: string): number {
  const lower = text.toLowerCase();
  if (lower === '+inf' || lower === 'inf' || lower === '+infinity' || lower === 'infinity') return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  // prom-client 15 writes NaN as `Nan` (e.g. an event-loop lag before its first sample).
  if (lower === 'nan') return NaN;
  const value = Number(text);
  if (text.trim() === '' || Number.isNaN(value))
    throw new ExpositionError(`${where}: ${JSON.stringify(text)} is not a number`);
  return value;
}
