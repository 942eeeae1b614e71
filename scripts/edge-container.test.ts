import { describe, expect, it } from "vitest";
import { ConfigError } from "../core/config-error";
import { edgeVars } from "./edge-container";

// Lo que la imagen del edge le pasa a `wrangler dev` (la prueba con wrangler real está en
// test/infra/build.test.ts).
describe("edge container settings", () => {
  const required = {
    DATABASE_URL: "postgres://edge@db/farutech",
    AUTH_SIGNING_KEYS: "[]",
    AUTH_ISSUER: "http://127.0.0.1:8787",
  };

  it("passes every setting the edge reads, and nothing else of the container's environment", () => {
    const vars = edgeVars({
      ...required,
      AUTH_ACCESS_TOKEN_TTL: "120",
      AUTH_CLIENT_FAILURE_LIMIT: "3",
      ENTITLEMENTS_FRESH_MS: "500",
      LOG_LEVEL: "debug",
      HOSTNAME: "edge-1",
      PATH: "/usr/bin",
    });
    expect(vars).toEqual({
      ...required,
      AUTH_ACCESS_TOKEN_TTL: "120",
      AUTH_CLIENT_FAILURE_LIMIT: "3",
      ENTITLEMENTS_FRESH_MS: "500",
      LOG_LEVEL: "debug",
    });
  });

  it("names the required settings that are missing", () => {
    expect(() => edgeVars({ DATABASE_URL: required.DATABASE_URL })).toThrow(ConfigError);
    expect(() => edgeVars({ DATABASE_URL: required.DATABASE_URL })).toThrow(/AUTH_SIGNING_KEYS/);
  });
});
