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
  /**
   * Dirección del cliente para el límite de fallos de autenticación. En workerd no se define y
   * vale `cf-connecting-ip` (Cloudflare la pone y pisa la del cliente); en Node, la del socket:
   * ahí la cabecera la elige el propio cliente y daría un cubo nuevo por intento.
   */
  clientAddress?: (c: Context) => string | undefined;
}

export interface OAuthSettings {
  refreshTokenTtlSeconds: number;
  /** Fallos de un client_id desde un mismo origen que bloquean ese origen (429) en la ventana. */
  maxClientAuthFailures: number;
  clientAuthFailureWindowSeconds: number;
  /** Fallos de un origen con cualquier client_id en la misma ventana. */
  maxSourceAuthFailures: number;
  /**
   * Fallos de un client_id sumando todos los orígenes en la ventana: a partir de ahí solo entran
   * los orígenes con un acierto reciente.
   */
  maxClientAuthFailuresAllSources: number;
}

export interface EdgeEnv {
  Variables: RequestContextVariables & { deps: EdgeDeps };
}
