import { describe, expect, it } from "vitest";
import { createSecretBox, generateEncryptionKey } from "./secret-box";

describe("secret box (AES-256-GCM)", () => {
  it("round-trips, never repeats a ciphertext and does not contain the plaintext", async () => {
    const box = await createSecretBox(JSON.stringify([generateEncryptionKey("k1")]));
    const a = await box.encrypt("postgres://tenant:s3cret@db/x");
    const b = await box.encrypt("postgres://tenant:s3cret@db/x");
    expect(a).not.toBe(b);
    expect(a).not.toContain("s3cret");
    expect(a.startsWith("v1.k1.")).toBe(true);
    expect(await box.decrypt(a)).toBe("postgres://tenant:s3cret@db/x");
  });

  it("rotates: a new key encrypts while the old one still decrypts; without it nothing decrypts", async () => {
    const old = generateEncryptionKey("old");
    const sealed = await (await createSecretBox(JSON.stringify([old]))).encrypt("hunter2");
    const rotated = await createSecretBox(JSON.stringify([generateEncryptionKey("new"), old]));
    expect(rotated.activeKeyId).toBe("new");
    expect(await rotated.decrypt(sealed)).toBe("hunter2");
    const other = await createSecretBox(JSON.stringify([generateEncryptionKey("old")]));
    await expect(other.decrypt(sealed)).rejects.toThrow();
    const [v, kid, iv, ct] = sealed.split(".");
    const tampered = `${v}.${kid}.${iv}.${ct?.startsWith("A") ? "B" : "A"}${ct?.slice(1)}`;
    await expect(rotated.decrypt(tampered)).rejects.toThrow();
  });
});
