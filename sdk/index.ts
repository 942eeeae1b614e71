export {
  type BackgroundScope,
  createFarutechClient,
  type FarutechClient,
  type FarutechClientOptions,
} from "./client.js";
export type {
  EdgeSnapshot,
  Entitlements,
  EntitlementsFallback,
  EntitlementsSnapshot,
  FallbackSnapshot,
} from "./entitlements.js";
export {
  FarutechAuthError,
  FarutechError,
  FarutechForbiddenError,
  FarutechUnavailableError,
} from "./errors.js";
export type { FarutechLogger, FetchLike } from "./http.js";
