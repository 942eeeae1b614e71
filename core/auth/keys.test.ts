import { describe, expect, it } from "vitest";
import { ConfigError } from "../config-error";
import { generateSigningKey, parsePublicJwks, parseSigningKeys, publicJwksOf } from "./keys";
import { createTokenSigner } from "./tokens";

describe("AUTH_SIGNING_KEYS", () => {
  it("refuses two keys with the same kid: a verifier would pick one and reject the other's tokens", async () => {
    const raw = JSON.stringify([await generateSigningKey("k1"), await generateSigningKey("k1")]);
    expect(() => parseSigningKeys(raw)).toThrow(ConfigError);
    expect(() => parseSigningKeys(raw)).toThrow(/k1 appears more than once/);
    const ok = [await generateSigningKey("k2"), await generateSigningKey("k1")];
    expect(parseSigningKeys(JSON.stringify(ok)).map((k) => k.kid)).toEqual(["k2", "k1"]);
  });
});

// Paso 1 de la rotación: una clave nueva al final solo se publica. Si está rota (mal copiada, `d`
// de otra clave), nada lo notaba hasta el paso 2, cuando al firmar con ella el edge entero caía
// con un «Invalid keyData» sin variable ni kid. Se comprueba cada clave al arrancar.
describe("AUTH_SIGNING_KEYS usability", () => {
  const settings = { issuer: "http://keys.test", audience: "a", accessTokenTtlSeconds: 60 };

  it("refuses, naming the kid, a key whose coordinates are not a P-256 point", async () => {
    const good = await generateSigningKey("active");
    const broken = { ...(await generateSigningKey("next")), x: "AAAA" };
    const attempt = createTokenSigner([good, broken], settings);
    await expect(attempt).rejects.toThrow(ConfigError);
    await expect(attempt).rejects.toThrow(/AUTH_SIGNING_KEYS: key next /);
  });

  it("refuses, naming the kid, a key whose private part belongs to another key", async () => {
    const good = await generateSigningKey("active");
    const other = await generateSigningKey("other");
    const mixed = { ...(await generateSigningKey("next")), d: other.d };
    await expect(createTokenSigner([good, mixed], settings)).rejects.toThrow(
      /AUTH_SIGNING_KEYS: key next /,
    );
    await expect(createTokenSigner([mixed, good], settings)).rejects.toThrow(
      /AUTH_SIGNING_KEYS: key next /,
    );
  });

  it("accepts a well-formed rotation set", async () => {
    const keys = [await generateSigningKey("new"), await generateSigningKey("old")];
    const signer = await createTokenSigner(keys, settings);
    const { token } = await signer.sign({
      sub: "c",
      tenant_id: null,
      instance_ids: [],
      roles: [],
    });
    expect(token.split(".")).toHaveLength(3);
  });
});

describe("AUTH_PUBLIC_JWKS", () => {
  it("refuses two keys with the same kid, like the private set", async () => {
    const pub = async (kid: string) => publicJwksOf([await generateSigningKey(kid)]).keys[0];
    const raw = JSON.stringify({ keys: [await pub("k1"), await pub("k1")] });
    expect(() => parsePublicJwks(raw)).toThrow(
      /AUTH_PUBLIC_JWKS: key id k1 appears more than once/,
    );
  });
});
