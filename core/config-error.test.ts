import { describe, expect, it } from "vitest";
import { generateSigningKey, parsePublicJwks, parseSigningKeys, publicJwksOf } from "./auth/keys";
import { ConfigError } from "./config";
import { createSecretBox, generateEncryptionKey } from "./secret-box";

// Una coma de más al rotar una clave: el error de JSON.parse cita el texto cerca del fallo, y
// ese texto es la clave. Lo que llega al log de arranque nombra la variable y nada más.
describe("key variables that are not valid JSON", () => {
  it("name the variable without repeating any of their content", async () => {
    const encryption = generateEncryptionKey("k1");
    const signing = await generateSigningKey("s1");
    const cases: [string, () => unknown, string][] = [
      [
        "ENCRYPTION_KEYS",
        () => createSecretBox(`${JSON.stringify([encryption]).slice(0, -1)},]`),
        encryption.key,
      ],
      [
        "AUTH_SIGNING_KEYS",
        () => parseSigningKeys(`${JSON.stringify([signing]).slice(0, -1)},]`),
        signing.d,
      ],
      [
        "AUTH_PUBLIC_JWKS",
        () => parsePublicJwks(`${JSON.stringify(publicJwksOf([signing])).slice(0, -2)},]}`),
        String(publicJwksOf([signing]).keys[0]?.x),
      ],
    ];
    for (const [variable, parse, secret] of cases) {
      const err = await Promise.resolve()
        .then(parse)
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err, variable).toBeInstanceOf(ConfigError);
      const error = err as Error;
      expect(error.message).toContain(`${variable}: is not valid JSON`);
      for (let i = 0; i + 6 <= secret.length; i++) {
        expect(error.message, variable).not.toContain(secret.slice(i, i + 6));
      }
      expect(error.cause).toBeUndefined();
    }
  });

  it("say what is wrong with valid JSON of the wrong shape, naming the variable", async () => {
    await expect(createSecretBox("[]")).rejects.toThrow(/ENCRYPTION_KEYS: must be a JSON array/);
    await expect(createSecretBox(JSON.stringify([{ kid: "short", key: "AAAA" }]))).rejects.toThrow(
      "ENCRYPTION_KEYS: key short must be 32 bytes",
    );
    expect(() => parseSigningKeys("{}")).toThrow(ConfigError);
  });
});
