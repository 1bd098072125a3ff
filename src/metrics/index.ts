/**
 * Prometheus metrics of Intermission, in a registry of their own. The core (event service, rollout
 * executor, host agents, metadata service) announces typed events and imports nothing from here;
 * this module subscribes to them. `createMetrics()` builds the metrics and their subscriptions, and
 * `metricsHandler()` serves them as a fetch handler.
 */
export {
  CLOCK_RESIDUAL_SECONDS_BUCKETS,
  EVENT_TRANSITIONS,
  METRIC_NAMES,
  PAUSE_SECONDS_BUCKETS,
  createMetrics,
  type CreateMetricsOptions,
  type EventTransition,
  type IntermissionMetrics,
  type ObserveExecutorOptions,
  type ObservedAgent,
  type ObservedEventService,
  type ObservedLease,
  type Unsubscribe,
  type VmMeasurementSource,
} from './metrics.js';
export { metricsHandler } from './handler.js';
export {
  METADATA_ENDPOINTS,
  METADATA_METHODS,
  type MetadataEndpoint,
  type MetadataMethod,
} from './internal/metadata-labels.js';
