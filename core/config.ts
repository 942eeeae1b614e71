import { z } from "zod";
import {
  type PrivateJwk,
  type PublicJwks,
  parsePublicJwks,
  parseSigningKeys,
  publicJwksOf,
} from "./auth/keys";
import { ConfigError, invalidConfiguration } from "./config-error";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export { ConfigError, invalidConfiguration } from "./config-error";

/** Valida el entorno al arrancar y falla con un mensaje que nombra cada variable mal puesta. */
export function parseEnv<T extends z.ZodTypeAny>(
  schema: T,
  env: Record<string, unknown>,
): z.infer<T> {
  const result = schema.safeParse(env);
  if (!result.success) {
    throw invalidConfiguration(
      result.error.issues.map((i) => [i.path.join(".") || "(env)", i.message]),
    );
  }
  return result.data;
}

const DECIMAL_RE = /^-?(\d+(\.\d+)?|\.\d+)$/;

/**
 * Un número de una variable de entorno. Vacía o en blanco (`GDPR_RETENTION_DAYS=` en un .env) vale
 * como no definida, es decir su default: `z.coerce` la leía como 0, y un plazo de retención 0
 * borra todo ya. Solo decimal: 0x10 o 1e3 no son lo que alguien quiso escribir.
 */
export function envNumber<T extends z.ZodType>(schema: T) {
  return z.preprocess((value) => {
    if (typeof value !== "string") return value;
    const text = value.trim();
    if (text === "") return undefined;
    return DECIMAL_RE.test(text) ? Number(text) : Number.NaN;
  }, schema);
}

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === "" ? undefined : v));

export const databaseEnv = z.object({
  DATABASE_URL: optionalString.pipe(z.url().optional()),
  DATABASE_DRIVER: z.enum(["neon", "node-postgres"]).optional(),
  NEON_WSPROXY: optionalString,
  PGLITE_DATA_DIR: optionalString,
});

export const authEnv = z.object({
  // Sin "/" final: el `iss` firmado, el que verifican las funciones y el del descubrimiento
  // coinciden aunque la variable se escriba con barra.
  AUTH_ISSUER: z
    .string()
    .default("http://127.0.0.1:8787")
    .transform((issuer) => issuer.replace(/\/+$/, "")),
  AUTH_AUDIENCE: z.string().default("farutech-orchestrator"),
  AUTH_SIGNING_KEYS: optionalString,
  AUTH_PUBLIC_JWKS: optionalString,
  AUTH_JWKS_URL: optionalString.pipe(z.url().optional()),
  AUTH_ACCESS_TOKEN_TTL: envNumber(z.number().int().min(30).max(3600).default(300)),
});

export const encryptionEnv = z.object({
  /** JSON `[{ kid, key }]` (32 bytes base64url); la primera cifra. Ver core/secret-box.ts. */
  ENCRYPTION_KEYS: optionalString,
  /** false: no se abren secretos en formato v1 (sin ligar a su fila); ver secretBoxFromEnv. */
  ENCRYPTION_ACCEPT_V1: z.stringbool().default(true),
});

/** Credenciales de NATS (usuario y clave, o token); sin ellas se conecta sin autenticación. */
export const natsAuthEnv = z.object({
  NATS_USER: optionalString,
  NATS_PASSWORD: optionalString,
  NATS_TOKEN: optionalString,
});

export function natsAuthFrom(env: z.infer<typeof natsAuthEnv>): {
  user?: string;
  pass?: string;
  token?: string;
} {
  return {
    ...(env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD ?? "" } : {}),
    ...(env.NATS_TOKEN ? { token: env.NATS_TOKEN } : {}),
  };
}

/** Conexión a NATS de un CLI de operaciones: NATS_URL (o el local) y sus credenciales. */
export function natsConnectionFromEnv(
  env: Record<string, unknown>,
  name: string,
): { servers: string; name: string; user?: string; pass?: string; token?: string } {
  const url = env.NATS_URL;
  return {
    servers: typeof url === "string" && url ? url : "nats://127.0.0.1:4222",
    name,
    ...natsAuthFrom(parseEnv(natsAuthEnv, env)),
  };
}

export const commonEnv = z.object({
  LOG_LEVEL: z.enum(LOG_LEVELS).default("info"),
  BASE_DOMAIN: z.string().default("farutech.com"),
});

export function signingKeysFrom(env: z.infer<typeof authEnv>): PrivateJwk[] {
  if (!env.AUTH_SIGNING_KEYS)
    throw new ConfigError("AUTH_SIGNING_KEYS is required to issue tokens");
  return parseSigningKeys(env.AUTH_SIGNING_KEYS);
}

/** Claves públicas para verificar: JWKS explícito, URL remota o derivadas de las privadas. */
export function verificationSource(
  env: z.infer<typeof authEnv>,
): { jwks: PublicJwks } | { jwksUrl: string } {
  if (env.AUTH_PUBLIC_JWKS) return { jwks: parsePublicJwks(env.AUTH_PUBLIC_JWKS) };
  if (env.AUTH_JWKS_URL) return { jwksUrl: env.AUTH_JWKS_URL };
  if (env.AUTH_SIGNING_KEYS) return { jwks: publicJwksOf(parseSigningKeys(env.AUTH_SIGNING_KEYS)) };
  throw new ConfigError("One of AUTH_PUBLIC_JWKS, AUTH_JWKS_URL or AUTH_SIGNING_KEYS is required");
}
