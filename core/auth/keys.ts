import { CompactSign, compactVerify, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import { z } from "zod";
import { assertUniqueKeyIds, invalidConfiguration, parseKeysJson } from "../config-error";

export const SIGNING_ALG = "ES256";

const privateJwkSchema = z.looseObject({
  kty: z.literal("EC"),
  crv: z.literal("P-256"),
  x: z.string(),
  y: z.string(),
  d: z.string(),
  kid: z.string().min(1),
});

const publicJwkSchema = z.looseObject({
  kty: z.string(),
  kid: z.string().min(1),
});

export type PrivateJwk = z.infer<typeof privateJwkSchema>;
export interface PublicJwks {
  keys: JWK[];
}

/** Claves privadas en orden: la primera firma, todas se publican (rotación sin corte). */
export function parseSigningKeys(raw: string): PrivateJwk[] {
  const parsed = z
    .array(privateJwkSchema)
    .min(1)
    .safeParse(parseKeysJson("AUTH_SIGNING_KEYS", raw));
  if (!parsed.success) {
    throw invalidConfiguration([
      ["AUTH_SIGNING_KEYS", "must be a JSON array of private EC P-256 JWKs with a kid"],
    ]);
  }
  // Dos claves con el mismo kid en el JWKS: un verificador elegiría una y rechazaría tokens.
  assertUniqueKeyIds(
    "AUTH_SIGNING_KEYS",
    parsed.data.map((k) => k.kid),
  );
  return parsed.data;
}

/**
 * Cada clave firma y su parte pública verifica lo firmado. Una mal copiada o con la `d` de otra se
 * rechaza al arrancar, con su kid: si no, pasaba el paso 1 de la rotación (solo se publica) y al
 * ponerla primera el edge caía con un «Invalid keyData» sin variable ni kid.
 */
export async function assertUsableSigningKeys(keys: PrivateJwk[]): Promise<void> {
  const probe = new TextEncoder().encode("farutech signing key check");
  for (const key of keys) {
    try {
      const { kty, crv, x, y } = key;
      const publicKey = await importJWK({ kty, crv, x, y }, SIGNING_ALG);
      const jws = await new CompactSign(probe)
        .setProtectedHeader({ alg: SIGNING_ALG })
        .sign(await importJWK(key, SIGNING_ALG));
      await compactVerify(jws, publicKey);
    } catch {
      throw invalidConfiguration([
        [
          "AUTH_SIGNING_KEYS",
          `key ${key.kid} is not a usable EC P-256 key pair (d must be the private key of x and y)`,
        ],
      ]);
    }
  }
}

export function parsePublicJwks(raw: string): PublicJwks {
  const parsed = z
    .object({ keys: z.array(publicJwkSchema).min(1) })
    .safeParse(parseKeysJson("AUTH_PUBLIC_JWKS", raw));
  if (!parsed.success) {
    throw invalidConfiguration([
      ["AUTH_PUBLIC_JWKS", "must be a JWKS document with at least one key"],
    ]);
  }
  // Como en AUTH_SIGNING_KEYS: con dos iguales, el verificador usaría una y rechazaría tokens.
  assertUniqueKeyIds(
    "AUTH_PUBLIC_JWKS",
    parsed.data.keys.map((k) => k.kid),
  );
  return { keys: parsed.data.keys as JWK[] };
}

export function publicJwksOf(keys: PrivateJwk[]): PublicJwks {
  return {
    keys: keys.map(({ kty, crv, x, y, kid }) => ({
      kty,
      crv,
      x,
      y,
      kid,
      alg: SIGNING_ALG,
      use: "sig",
    })),
  };
}

export async function generateSigningKey(kid: string): Promise<PrivateJwk> {
  const { privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return privateJwkSchema.parse({ ...jwk, kid });
}
