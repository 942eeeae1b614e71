import { z } from "zod";
import { publicJwksOf } from "../core/auth/keys";
import { createTokenSigner, createTokenVerifier } from "../core/auth/tokens";
import { authEnv, commonEnv, envNumber, parseEnv, signingKeysFrom } from "../core/config";
import type { Logger } from "../core/logger";
import { ofrepConfiguration } from "../core/ofrep";
import { createEntitlementsStore } from "./entitlements-store";
import type { EdgeDeps } from "./env";

const oauthEnv = z.object({
  AUTH_REFRESH_TOKEN_TTL: envNumber(
    z
      .number()
      .int()
      .min(60)
      .max(365 * 86_400)
      .default(30 * 86_400),
  ),
  AUTH_CLIENT_FAILURE_LIMIT: envNumber(z.number().int().min(1).default(5)),
  AUTH_CLIENT_FAILURE_WINDOW: envNumber(z.number().int().min(1).max(86_400).default(60)),
  // Fallos de un origen con cualquier client_id: inventar uno por intento no salta el límite.
  AUTH_SOURCE_FAILURE_LIMIT: envNumber(z.number().int().min(1).default(100)),
  // Fallos de un client_id desde todos los orígenes: un ataque repartido tampoco prueba sin fin.
  AUTH_CLIENT_FAILURE_LIMIT_ALL_SOURCES: envNumber(z.number().int().min(1).default(50)),
});

// Cota de la especificación: un cambio en la API admin se ve en el edge en ≤ 2 s.
const entitlementsCacheEnv = z.object({
  ENTITLEMENTS_FRESH_MS: envNumber(z.number().int().min(0).max(2_000).default(1_000)),
  ENTITLEMENTS_MAX_AGE_MS: envNumber(z.number().int().min(0).max(2_000).default(2_000)),
  ENTITLEMENTS_STALE_IF_ERROR_S: envNumber(z.number().int().min(0).max(86_400).default(3_600)),
  ENTITLEMENTS_LOAD_TIMEOUT_MS: envNumber(z.number().int().min(50).max(30_000).default(1_500)),
  // Una entrada pesa de 5 KiB (10 features) a 32 KiB (100): 2000 caben en los 128 MB de un
  // isolate con holgura; 10 000 de las grandes lo hacían reiniciar (y volver a cargar todo de Neon).
  ENTITLEMENTS_CACHE_MAX_ENTRIES: envNumber(z.number().int().min(1).default(2_000)),
});

export const edgeEnv = authEnv
  .extend(commonEnv.shape)
  .extend(oauthEnv.shape)
  .extend(entitlementsCacheEnv.shape);

/** Dependencias del edge salvo la base, que cada runtime aporta a su manera. */
export async function createEdgeDeps(
  rawEnv: Record<string, unknown>,
  logger: Logger,
  withDb: EdgeDeps["withDb"],
): Promise<EdgeDeps> {
  const env = parseEnv(edgeEnv, rawEnv);
  const keys = signingKeysFrom(env);
  const freshMs = Math.min(env.ENTITLEMENTS_FRESH_MS, env.ENTITLEMENTS_MAX_AGE_MS);
  const jwks = publicJwksOf(keys);
  const settings = {
    issuer: env.AUTH_ISSUER,
    audience: env.AUTH_AUDIENCE,
    accessTokenTtlSeconds: env.AUTH_ACCESS_TOKEN_TTL,
  };
  return {
    withDb,
    signer: await createTokenSigner(keys, settings),
    verifier: createTokenVerifier({ jwks }, settings),
    jwks,
    issuer: env.AUTH_ISSUER,
    oauth: {
      refreshTokenTtlSeconds: env.AUTH_REFRESH_TOKEN_TTL,
      maxClientAuthFailures: env.AUTH_CLIENT_FAILURE_LIMIT,
      clientAuthFailureWindowSeconds: env.AUTH_CLIENT_FAILURE_WINDOW,
      maxSourceAuthFailures: env.AUTH_SOURCE_FAILURE_LIMIT,
      maxClientAuthFailuresAllSources: env.AUTH_CLIENT_FAILURE_LIMIT_ALL_SOURCES,
    },
    entitlements: createEntitlementsStore(
      {
        freshMs,
        maxAgeMs: env.ENTITLEMENTS_MAX_AGE_MS,
        staleIfErrorMs: env.ENTITLEMENTS_STALE_IF_ERROR_S * 1000,
        loadTimeoutMs: env.ENTITLEMENTS_LOAD_TIMEOUT_MS,
        maxEntries: env.ENTITLEMENTS_CACHE_MAX_ENTRIES,
        // Cada stage tiene su issuer: su parte de la Cache API compartida de la zona.
        deployment: env.AUTH_ISSUER,
      },
      logger,
    ),
    ofrepConfiguration: ofrepConfiguration(freshMs),
    logger,
  };
}
