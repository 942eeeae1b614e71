import {
  createLocalJWKSet,
  createRemoteJWKSet,
  importJWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
  SignJWT,
} from "jose";
import { z } from "zod";
import { AppError } from "../errors";
import { assertUsableSigningKeys, type PrivateJwk, type PublicJwks, SIGNING_ALG } from "./keys";

export const roles = ["platform_admin", "catalog_manager", "support", "tenant_app"] as const;
export type Role = (typeof roles)[number];

export interface AccessClaims {
  sub: string;
  tenant_id: string | null;
  instance_ids: string[];
  roles: string[];
}

const claimsSchema = z.object({
  sub: z.string().min(1),
  tenant_id: z.string().nullable(),
  instance_ids: z.array(z.string()),
  roles: z.array(z.string()),
});

/** RFC 9068: el `typ` distingue un access token de cualquier otro JWT firmado con la misma clave. */
export const ACCESS_TOKEN_TYPE = "at+jwt";
// Las funciones en Lambda verifican tokens del edge: un reloj algo adelantado no debe dar 401.
export const CLOCK_TOLERANCE_SECONDS = 30;

export interface TokenSettings {
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
}

export interface TokenSigner {
  sign(claims: AccessClaims): Promise<{ token: string; expiresIn: number }>;
}

export async function createTokenSigner(
  keys: PrivateJwk[],
  settings: TokenSettings,
): Promise<TokenSigner> {
  const active = keys[0];
  if (!active) throw new Error("at least one signing key is required");
  // Todas, no solo la activa: las demás se publican y mañana firmarán.
  await assertUsableSigningKeys(keys);
  const key = await importJWK(active, SIGNING_ALG);
  return {
    async sign(claims) {
      // RFC 9068 §2.2: client_id es obligatorio; el sujeto de un token de cliente es el cliente.
      const token = await new SignJWT({ ...claims, client_id: claims.sub })
        .setProtectedHeader({ alg: SIGNING_ALG, kid: active.kid, typ: ACCESS_TOKEN_TYPE })
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setSubject(claims.sub)
        .setIssuedAt()
        .setJti(crypto.randomUUID())
        .setExpirationTime(`${settings.accessTokenTtlSeconds}s`)
        .sign(key);
      return { token, expiresIn: settings.accessTokenTtlSeconds };
    },
  };
}

/** Lo que un verificador con AUTH_JWKS_URL guarda el JWKS: el max-age con el que lo sirve el edge. */
export const JWKS_CACHE_MAX_AGE_MS = 300_000;
/** Lo que se recuerda un token ya verificado (como mucho, hasta su exp). */
const VERIFIED_CACHE_MS = 60_000;

export interface TokenVerifier {
  verify(token: string): Promise<AccessClaims & JWTPayload>;
}

export function createTokenVerifier(
  source: { jwks: PublicJwks } | { jwksUrl: string },
  settings: Pick<TokenSettings, "issuer" | "audience">,
): TokenVerifier {
  const getKey: JWTVerifyGetKey =
    "jwks" in source
      ? createLocalJWKSet(source.jwks)
      : // El JWKS del edge dice max-age=300; jose lo guardaba 10 min por defecto, y una clave ya
        // retirada (o filtrada) seguía valiendo aquí el doble de lo que dice la guía de rotación.
        createRemoteJWKSet(new URL(source.jwksUrl), { cacheMaxAge: JWKS_CACHE_MAX_AGE_MS });
  // Tokens ya verificados: verificar ES256 cuesta ~0,4 ms por petición. Hasta su exp, pero no más
  // de un minuto: al retirar una clave, sus tokens (uno acuñado con una clave filtrada puede
  // llevar cualquier exp) dejan de valer cuando el JWKS se renueva, no cuando vencen.
  const verified = new Map<string, { claims: AccessClaims & JWTPayload; until: number }>();
  const CACHE_MAX = 1_000;
  return {
    async verify(token) {
      const hit = verified.get(token);
      if (hit && hit.until > Date.now()) return hit.claims;
      if (hit) verified.delete(token);
      const claims = await verifyUncached(token);
      if (verified.size >= CACHE_MAX) {
        const oldest = verified.keys().next().value;
        if (oldest !== undefined) verified.delete(oldest);
      }
      // La cache acepta lo mismo que jwtVerify: hasta exp más la tolerancia de reloj.
      const expiresAt =
        typeof claims.exp === "number" ? (claims.exp + CLOCK_TOLERANCE_SECONDS) * 1000 : 0;
      verified.set(token, { claims, until: Math.min(expiresAt, Date.now() + VERIFIED_CACHE_MS) });
      return claims;
    },
  };

  async function verifyUncached(token: string): Promise<AccessClaims & JWTPayload> {
    try {
      const { payload } = await jwtVerify(token, getKey, {
        issuer: settings.issuer,
        audience: settings.audience,
        algorithms: [SIGNING_ALG],
        typ: ACCESS_TOKEN_TYPE,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ["exp", "iat", "sub"],
      });
      const claims = claimsSchema.safeParse(payload);
      if (!claims.success)
        throw new AppError("unauthorized", "The access token is missing required claims");
      return { ...payload, ...claims.data };
    } catch (err) {
      if (err instanceof AppError) throw err;
      if (err instanceof joseErrors.JWTExpired) {
        throw new AppError("unauthorized", "The access token has expired", { cause: err });
      }
      throw new AppError("unauthorized", "The access token is invalid", { cause: err });
    }
  }
}

export function bearerToken(header: string | undefined): string {
  const match = /^Bearer\s+([A-Za-z0-9._~+/-]+=*)\s*$/i.exec(header ?? "");
  if (!match?.[1]) throw new AppError("unauthorized", "A Bearer access token is required");
  return match[1];
}

export function hasRole(claims: AccessClaims, role: Role): boolean {
  return claims.roles.includes(role);
}

/**
 * Un token de tenant solo lee sus instancias; platform_admin lee cualquiera. Los UUID se comparan
 * en minúsculas: el mismo id en mayúsculas no puede dar 403 en una ruta y 200 en otra.
 */
export function canReadInstance(claims: AccessClaims, instanceId: string): boolean {
  if (hasRole(claims, "platform_admin")) return true;
  const wanted = instanceId.toLowerCase();
  return claims.instance_ids.some((id) => id.toLowerCase() === wanted);
}
