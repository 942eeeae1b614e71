import type { Context } from "hono";
import type { PublicJwks } from "../core/auth/keys";
import type { TokenSigner, TokenVerifier } from "../core/auth/tokens";
import type { RequestContextVariables } from "../core/http/request-context";
import type { Logger } from "../core/logger";
import type { OfrepConfiguration } from "../core/ofrep";
import type { Database } from "../db/types";
import type { EntitlementsStore } from "./entitlements-store";

export interface EdgeDeps {
  /** Ejecuta fn con una base: compartida en Node, un Pool por petición en workerd. */
  withDb<T>(c: Context, fn: (db: Database) => Promise<T>): Promise<T>;
  signer: TokenSigner;
  verifier: TokenVerifier;
  jwks: PublicJwks;
  issuer: string;
  oauth: OAuthSettings;
  /** Entitlements resueltos con cache SWR por niveles (docs/edge-cache.md). */
  entitlements: EntitlementsStore;
  /** Cuerpo de GET /ofrep/v1/configuration: depende solo de la configuración del despliegue. */
  ofrepConfiguration: OfrepConfiguration;
  logger: Logger;
}

export interface OAuthSettings {
  refreshTokenTtlSeconds: number;
  /** Fallos de autenticación de un client_id que lo bloquean (429) durante la ventana. */
  maxClientAuthFailures: number;
  clientAuthFailureWindowSeconds: number;
}

export interface EdgeEnv {
  Variables: RequestContextVariables & { deps: EdgeDeps };
}
