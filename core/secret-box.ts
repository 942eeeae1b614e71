import { z } from "zod";
import { assertUniqueKeyIds, invalidConfiguration, parseKeysJson } from "./config-error";
import { base64url, fromBase64url } from "./ids";

/**
 * Cifrado de secretos en reposo (AES-256-GCM, WebCrypto). El texto cifrado lleva el id de la
 * clave: para rotar se agrega una clave nueva al frente y las viejas siguen descifrando.
 * Formato: `v2.<kid>.<iv>.<ciphertext+tag>` (base64url). Los datos asociados (AAD) son el kid y
 * el contexto del secreto (de qué fila y columna es): un secreto copiado a otra fila no descifra,
 * así quien pueda escribir en la base no puede darle a un tenant la base de otro. `v1` (AAD solo
 * el kid) se sigue leyendo; `npm run secrets:reseal` lo pasa a v2.
 */
export interface SecretBox {
  activeKeyId: string;
  encrypt(plaintext: string, context: string): Promise<string>;
  decrypt(sealed: string, context: string): Promise<string>;
}

/** Contextos de los secretos que guarda el proyecto (los AAD de cada uno). */
export const secretContext = {
  connectionString: (tenantInstanceId: string) =>
    `tenant_instances/${tenantInstanceId}/connection_string`,
  pendingConnectionString: (tenantInstanceId: string) =>
    `tenant_instances/${tenantInstanceId}/pending_connection_string`,
  webhookSecret: (webhookId: string) => `webhook_endpoints/${webhookId}/secret`,
  previousWebhookSecret: (webhookId: string) => `webhook_endpoints/${webhookId}/previous_secret`,
};

/** Versión y kid de un secreto cifrado, sin descifrarlo (para rotar y revisar). */
export function sealedKeyOf(sealed: string): { version: string; kid: string } | undefined {
  const [version, kid] = sealed.split(".");
  return version && kid ? { version, kid } : undefined;
}

// El kid va en el texto cifrado (`v2.<kid>.…`): sin puntos.
const KID_RE = /^[A-Za-z0-9_-]{1,40}$/;
const keysSchema = z.array(z.object({ kid: z.string(), key: z.string() })).min(1);

/**
 * La caja de ENCRYPTION_KEYS, o undefined sin claves. Con ENCRYPTION_ACCEPT_V1=false no abre el
 * formato v1, que no va ligado a su fila (copiado a otra fila descifra): se apaga cuando
 * `npm run secrets:reseal -- --check` ya no cuenta ningún `v1.*`.
 */
export async function secretBoxFromEnv(env: {
  ENCRYPTION_KEYS?: string | undefined;
  ENCRYPTION_ACCEPT_V1?: boolean | undefined;
}): Promise<SecretBox | undefined> {
  if (!env.ENCRYPTION_KEYS) return undefined;
  return createSecretBox(env.ENCRYPTION_KEYS, { acceptV1: env.ENCRYPTION_ACCEPT_V1 ?? true });
}

/** ENCRYPTION_KEYS: JSON `[{ "kid": "k2026", "key": "<32 bytes base64url>" }, …]`; la primera cifra. */
export async function createSecretBox(
  raw: string,
  options: { acceptV1?: boolean } = {},
): Promise<SecretBox> {
  const acceptV1 = options.acceptV1 ?? true;
  const parsed = keysSchema.safeParse(parseKeysJson("ENCRYPTION_KEYS", raw));
  if (!parsed.success) {
    throw invalidConfiguration([
      ["ENCRYPTION_KEYS", "must be a JSON array of { kid, key } (32-byte base64url keys)"],
    ]);
  }
  // Por su posición, no su valor: con kid y key intercambiados, el valor sería la clave.
  const badKid = parsed.data.findIndex((k) => !KID_RE.test(k.kid));
  if (badKid >= 0) {
    throw invalidConfiguration([
      ["ENCRYPTION_KEYS", `the kid of key #${badKid + 1} must be 1-40 letters, digits, _ or -`],
    ]);
  }
  const keys = new Map<string, Awaited<ReturnType<typeof crypto.subtle.importKey>>>();
  // Repetido, el segundo pisaría al primero: lo cifrado con aquel ya no se podría leer.
  assertUniqueKeyIds(
    "ENCRYPTION_KEYS",
    parsed.data.map((k) => k.kid),
  );
  for (const { kid, key } of parsed.data) {
    let bytes: Uint8Array;
    try {
      bytes = fromBase64url(key);
    } catch {
      bytes = new Uint8Array(0);
    }
    if (bytes.length !== 32) {
      throw invalidConfiguration([["ENCRYPTION_KEYS", `key ${kid} must be 32 bytes in base64url`]]);
    }
    keys.set(
      kid,
      await crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]),
    );
  }
  const active = parsed.data[0];
  if (!active) throw new Error("no encryption key");
  return {
    activeKeyId: active.kid,
    async encrypt(plaintext, context) {
      const key = keys.get(active.kid);
      if (!key) throw new Error("active key missing");
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const ct = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: associatedData("v2", active.kid, context) },
        key,
        new TextEncoder().encode(plaintext),
      );
      return `v2.${active.kid}.${base64url(iv)}.${base64url(new Uint8Array(ct))}`;
    },
    async decrypt(sealed, context) {
      const [version, kid, iv, ct, ...rest] = sealed.split(".");
      if ((version !== "v1" && version !== "v2") || !kid || !iv || !ct || rest.length > 0) {
        throw new Error("unrecognized sealed secret");
      }
      if (version === "v1" && !acceptV1) {
        throw new Error(
          `sealed secret for ${context} is in the v1 format, refused with ENCRYPTION_ACCEPT_V1=false: run npm run secrets:reseal`,
        );
      }
      const key = keys.get(kid);
      if (!key) throw new Error(`no key with id ${kid} to decrypt this secret`);
      try {
        const pt = await crypto.subtle.decrypt(
          {
            name: "AES-GCM",
            iv: fromBase64url(iv),
            additionalData: associatedData(version, kid, context),
          },
          key,
          fromBase64url(ct),
        );
        return new TextDecoder().decode(pt);
      } catch {
        // El error de WebCrypto no dice nada útil; este dice qué secreto no cuadra.
        throw new Error(`sealed secret for ${context} was altered or belongs to another record`);
      }
    },
  };
}

function associatedData(version: string, kid: string, context: string): Uint8Array {
  return new TextEncoder().encode(version === "v1" ? kid : `${kid}\n${context}`);
}

export function generateEncryptionKey(kid: string): { kid: string; key: string } {
  return { kid, key: base64url(crypto.getRandomValues(new Uint8Array(32))) };
}
