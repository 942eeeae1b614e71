import type { AccessClaims, TokenVerifier } from "../core/auth/tokens";
import type { BusProvider } from "../core/bus-provider";
import type { RequestContextVariables } from "../core/http/request-context";
import type { Logger } from "../core/logger";
import type { SecretBox } from "../core/secret-box";
import type { Database } from "../db/types";

export interface AdminDeps {
  db: Database;
  bus: BusProvider;
  verifier: TokenVerifier;
  logger: Logger;
  baseDomain: string;
  /** Cifra secretos en reposo (webhooks); sin ENCRYPTION_KEYS esas rutas responden 503. */
  secretBox?: SecretBox;
}

import type { IdempotencyReservation } from "./services/mutation";

export interface AdminEnv {
  Variables: RequestContextVariables & {
    deps: AdminDeps;
    claims: AccessClaims;
    /** Hora (epoch ms) tras la cual una mutación ya no confirma (ver idempotency.ts). */
    commitDeadline?: number;
    /** Reserva de Idempotency-Key de esta petición (ver idempotency.ts). */
    idempotencyReservation?: IdempotencyReservation;
  };
}
