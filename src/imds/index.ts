/**
 * The Azure-compatible metadata service: `/metadata/scheduledevents`, `/metadata/instance` and
 * `/metadata/versions` as a fetch handler ({@link createMetadataApp}), and the Node adapter that
 * serves it on one socket per VM ({@link listenMetadata}).
 */
export type { MetadataBackend } from './backend.js';
export {
  createMetadataApp,
  AZURE_DISABLE_AFTER_IDLE_MS,
  DEFAULT_DISABLE_AFTER_IDLE_MS,
  DEFAULT_MAX_BODY_BYTES,
  DEFAULT_RATE_LIMIT,
  type MetadataApp,
  type MetadataAppOptions,
  type MetadataEnv,
  type MetadataRateLimit,
  type PreflightAnswer,
} from './app.js';
export {
  ATTESTED_SINCE,
  ATTESTED_VALIDITY_MS,
  MAX_NONCE_LENGTH,
  attestedDocument,
  attestedNonce,
  attestedTime,
  type AttestedDocument,
} from './attested/document.js';
export {
  ATTESTATION_CERT_FILE,
  ATTESTATION_DIR,
  ATTESTATION_KEY_FILE,
  openAttestationKey,
  type OpenAttestationKeyOptions,
} from './attested/key-store.js';
export type { AttestedResponse } from './attested/respond.js';
export type { AttestationSigner } from './attested/signer.js';
export { rawTargetVerdict, type RawRequestLine } from './raw-target.js';
export {
  listenMetadata,
  type ListenMetadataOptions,
  type MetadataAddress,
  type MetadataBinding,
  type MetadataListeners,
} from './listeners.js';
export {
  METADATA_ERRORS,
  MetadataRequestError,
  isMetadataRequestError,
  type MetadataErrorCode,
  type MetadataRequestErrorOptions,
} from './errors.js';
export { onMetadataError, type MetadataEventListener, type MetadataEventMap } from './events.js';
export {
  parseStartRequests,
  renderScheduledEvents,
  rfc1123,
  scheduledEventView,
  scheduledEventsView,
  type ScheduledEventView,
  type ScheduledEventsView,
  type ScheduledEventsViewOptions,
} from './scheduled-events.js';
export {
  AZ_ENVIRONMENT,
  COMPUTE_PROVIDER,
  instanceDocument,
  selectInstanceNode,
  type InstanceDocument,
  type InstanceObject,
  type InstanceValue,
} from './instance.js';
export {
  INSTANCE_API_VERSIONS,
  SCHEDULED_EVENTS_API_VERSIONS,
  SCHEDULED_EVENTS_PROFILES,
  isInstanceApiVersion,
  isScheduledEventsApiVersion,
  newestVersions,
  type InstanceApiVersion,
  type ScheduledEventsApiVersion,
  type ScheduledEventsProfile,
} from './versions.js';
