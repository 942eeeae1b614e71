import { describe, expect, it } from "vitest";
import { ConfigError } from "./config-error";
import { base64url, fromBase64url } from "./ids";
import {
  createSecretBox,
  generateEncryptionKey,
  sealedKeyOf,
  secretBoxFromEnv,
  secretContext,
} from "./secret-box";

const A = secretContext.connectionString("11111111-1111-4111-8111-111111111111");
const B = secretContext.connectionString("22222222-2222-4222-8222-222222222222");

describe("secret box (AES-256-GCM)", () => {
  it("round-trips, never repeats a ciphertext and does not contain the plaintext", async () => {
    const box = await createSecretBox(JSON.stringify([generateEncryptionKey("k1")]));
    const a = await box.encrypt("postgres://tenant:s3cret@db/x", A);
    const b = await box.encrypt("postgres://tenant:s3cret@db/x", A);
    expect(a).not.toBe(b);
    expect(a).not.toContain("s3cret");
    expect(a.startsWith("v2.k1.")).toBe(true);
    expect(sealedKeyOf(a)).toEqual({ version: "v2", kid: "k1" });
    expect(await box.decrypt(a, A)).toBe("postgres://tenant:s3cret@db/x");
  });

  it("binds a secret to its record: copied to another row it does not decrypt", async () => {
    const box = await createSecretBox(JSON.stringify([generateEncryptionKey("k1")]));
    const sealed = await box.encrypt("postgres://a:pw@db/a", A);
    await expect(box.decrypt(sealed, B)).rejects.toThrow(
      `sealed secret for ${B} was altered or belongs to another record`,
    );
    await expect(
      box.decrypt(sealed, secretContext.webhookSecret("11111111-1111-4111-8111-111111111111")),
    ).rejects.toThrow(/belongs to another record/);
  });

  it("still reads v1 secrets (the kid alone as associated data), whatever the context", async () => {
    const key = generateEncryptionKey("legacy");
    const raw = await crypto.subtle.importKey("raw", fromBase64url(key.key), "AES-GCM", false, [
      "encrypt",
    ]);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: new TextEncoder().encode("legacy") },
      raw,
      new TextEncoder().encode("whsec_old"),
    );
    const v1 = `v1.legacy.${base64url(iv)}.${base64url(new Uint8Array(ct))}`;
    const box = await createSecretBox(JSON.stringify([key]));
    expect(await box.decrypt(v1, A)).toBe("whsec_old");
    expect(sealedKeyOf(v1)).toEqual({ version: "v1", kid: "legacy" });
    // v1 no está ligado a su fila: copiado a otra, descifra. Tras `secrets:reseal` (que los pasa a
    // v2) se apagan con ENCRYPTION_ACCEPT_V1=false y uno copiado ya no sirve.
    expect(await box.decrypt(v1, B)).toBe("whsec_old");
    const strict = await secretBoxFromEnv({
      ENCRYPTION_KEYS: JSON.stringify([key]),
      ENCRYPTION_ACCEPT_V1: false,
    });
    await expect(strict?.decrypt(v1, A)).rejects.toThrow(/ENCRYPTION_ACCEPT_V1/);
    const sealed = await (strict as NonNullable<typeof strict>).encrypt("whsec_new", A);
    expect(await strict?.decrypt(sealed, A)).toBe("whsec_new");
    expect(await secretBoxFromEnv({ ENCRYPTION_ACCEPT_V1: false })).toBeUndefined();
  });

  it("refuses a key that is not base64url with a configuration error naming it", async () => {
    const err = await createSecretBox(JSON.stringify([{ kid: "k1", key: "not base64!" }])).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(String((err as Error).message)).toMatch(/ENCRYPTION_KEYS.*k1/);
  });

  it("says which key ids are allowed when one is not, without echoing the value", async () => {
    const ok = generateEncryptionKey("k1");
    const dotted = { ...generateEncryptionKey("x"), kid: "enc.2025" };
    await expect(createSecretBox(JSON.stringify([ok, dotted]))).rejects.toThrow(
      /ENCRYPTION_KEYS: the kid of key #2 must be 1-40 letters, digits, _ or -/,
    );
    // kid y key intercambiados: el mensaje no repite la clave.
    const swapped = { kid: ok.key, key: "k1" };
    const err = await createSecretBox(JSON.stringify([swapped])).catch((e: unknown) => e);
    expect(String((err as Error).message)).not.toContain(ok.key);
  });

  it("refuses two keys with the same id: the second would silently replace the first", async () => {
    const a = generateEncryptionKey("k1");
    const b = { ...generateEncryptionKey("k1"), kid: "k1" };
    await expect(createSecretBox(JSON.stringify([a, b]))).rejects.toThrow(/k1.*more than once/);
  });

  it("rotates: a new key encrypts while the old one still decrypts; without it nothing decrypts", async () => {
    const old = generateEncryptionKey("old");
    const sealed = await (await createSecretBox(JSON.stringify([old]))).encrypt("hunter2", A);
    const rotated = await createSecretBox(JSON.stringify([generateEncryptionKey("new"), old]));
    expect(rotated.activeKeyId).toBe("new");
    expect(await rotated.decrypt(sealed, A)).toBe("hunter2");
    const other = await createSecretBox(JSON.stringify([generateEncryptionKey("old")]));
    await expect(other.decrypt(sealed, A)).rejects.toThrow();
    const [v, kid, iv, ct] = sealed.split(".");
    const tampered = `${v}.${kid}.${iv}.${ct?.startsWith("A") ? "B" : "A"}${ct?.slice(1)}`;
    await expect(rotated.decrypt(tampered, A)).rejects.toThrow();
    await expect(rotated.decrypt(`${sealed}.extra`, A)).rejects.toThrow(
      "unrecognized sealed secret",
    );
  });
});
