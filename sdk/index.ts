export {
  type BackgroundScope,
  createFarutechClient,
  type FarutechClient,
  type FarutechClientOptions,
} from "./client";
export type {
  EdgeSnapshot,
  Entitlements,
  EntitlementsFallback,
  EntitlementsSnapshot,
  FallbackSnapshot,
} from "./entitlements";
export {
  FarutechAuthError,
  FarutechError,
  FarutechForbiddenError,
  FarutechUnavailableError,
} from "./errors";
export type { FarutechLogger, FetchLike } from "./http";
