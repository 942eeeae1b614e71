import { describe, expect, it } from "vitest";
import { ConfigError } from "../config-error";
import { generateSigningKey, parseSigningKeys } from "./keys";

describe("AUTH_SIGNING_KEYS", () => {
  it("refuses two keys with the same kid: a verifier would pick one and reject the other's tokens", async () => {
    const raw = JSON.stringify([await generateSigningKey("k1"), await generateSigningKey("k1")]);
    expect(() => parseSigningKeys(raw)).toThrow(ConfigError);
    expect(() => parseSigningKeys(raw)).toThrow(/k1 appears more than once/);
    const ok = [await generateSigningKey("k2"), await generateSigningKey("k1")];
    expect(parseSigningKeys(JSON.stringify(ok)).map((k) => k.kid)).toEqual(["k2", "k1"]);
  });
});
