import { z } from "zod";
import { invalidConfiguration, parseKeysJson } from "./config-error";
import { base64url, fromBase64url } from "./ids";

/**
 * Cifrado de secretos en reposo (AES-256-GCM, WebCrypto). El texto cifrado lleva el id de la
 * clave: para rotar se agrega una clave nueva al frente y las viejas siguen descifrando.
 * Formato: `v1.<kid>.<iv>.<ciphertext+tag>` (base64url).
 */
export interface SecretBox {
  activeKeyId: string;
  encrypt(plaintext: string): Promise<string>;
  decrypt(sealed: string): Promise<string>;
}

const keysSchema = z
  .array(z.object({ kid: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/), key: z.string() }))
  .min(1);

/** ENCRYPTION_KEYS: JSON `[{ "kid": "k2026", "key": "<32 bytes base64url>" }, …]`; la primera cifra. */
export async function createSecretBox(raw: string): Promise<SecretBox> {
  const parsed = keysSchema.safeParse(parseKeysJson("ENCRYPTION_KEYS", raw));
  if (!parsed.success) {
    throw invalidConfiguration([
      ["ENCRYPTION_KEYS", "must be a JSON array of { kid, key } (32-byte base64url keys)"],
    ]);
  }
  const keys = new Map<string, Awaited<ReturnType<typeof crypto.subtle.importKey>>>();
  for (const { kid, key } of parsed.data) {
    const bytes = fromBase64url(key);
    if (bytes.length !== 32) {
      throw invalidConfiguration([["ENCRYPTION_KEYS", `key ${kid} must be 32 bytes`]]);
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
    async encrypt(plaintext) {
      const key = keys.get(active.kid);
      if (!key) throw new Error("active key missing");
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const ct = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: new TextEncoder().encode(active.kid) },
        key,
        new TextEncoder().encode(plaintext),
      );
      return `v1.${active.kid}.${base64url(iv)}.${base64url(new Uint8Array(ct))}`;
    },
    async decrypt(sealed) {
      const [version, kid, iv, ct] = sealed.split(".");
      if (version !== "v1" || !kid || !iv || !ct) throw new Error("unrecognized sealed secret");
      const key = keys.get(kid);
      if (!key) throw new Error(`no key with id ${kid} to decrypt this secret`);
      const pt = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: fromBase64url(iv), additionalData: new TextEncoder().encode(kid) },
        key,
        fromBase64url(ct),
      );
      return new TextDecoder().decode(pt);
    },
  };
}

export function generateEncryptionKey(kid: string): { kid: string; key: string } {
  return { kid, key: base64url(crypto.getRandomValues(new Uint8Array(32))) };
}
