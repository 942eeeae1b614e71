import { exportJWK, generateKeyPair, type JWK } from "jose";
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

export function parsePublicJwks(raw: string): PublicJwks {
  const parsed = z
    .object({ keys: z.array(publicJwkSchema).min(1) })
    .safeParse(parseKeysJson("AUTH_PUBLIC_JWKS", raw));
  if (!parsed.success) {
    throw invalidConfiguration([
      ["AUTH_PUBLIC_JWKS", "must be a JWKS document with at least one key"],
    ]);
  }
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
