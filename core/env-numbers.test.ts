import { describe, expect, it } from "vitest";
import type { z } from "zod";
import { edgeEnv } from "../edge/config";
import { functionsEnv } from "../functions/runtime";
import { workersEnv } from "../workers/runtime";
import { parseEnv } from "./config";

// Una variable numérica vacía (`GDPR_RETENTION_DAYS=` en un .env) valía 0: con los plazos de
// retención, borrar ya todos los datos personales. Vacía vale como no definida; solo decimal.
describe.each([
  ["workers", workersEnv],
  ["functions", functionsEnv],
  ["edge", edgeEnv],
] as const)("numeric environment variables of the %s", (_name, schema) => {
  const defaults = parseEnv(schema as z.ZodTypeAny, {}) as Record<string, unknown>;
  const numeric = Object.keys(defaults).filter((key) => typeof defaults[key] === "number");

  it("include the retention and timing settings", () => {
    expect(numeric.length).toBeGreaterThan(0);
  });

  it.each(numeric)("%s: empty or blank is its default, not 0", (key) => {
    for (const blank of ["", "  "]) {
      const parsed = parseEnv(schema as z.ZodTypeAny, { [key]: blank }) as Record<string, unknown>;
      expect(parsed[key]).toBe(defaults[key]);
    }
  });

  it.each(numeric)("%s: only decimal digits (no hex, exponent or sign games)", (key) => {
    for (const odd of ["0x10", "1e3", "12abc", "Infinity"]) {
      expect(() => parseEnv(schema as z.ZodTypeAny, { [key]: odd }), odd).toThrow(key);
    }
    // Con espacios alrededor sigue siendo el número que se escribió.
    const value = String(defaults[key]);
    expect(
      (parseEnv(schema as z.ZodTypeAny, { [key]: ` ${value} ` }) as Record<string, unknown>)[key],
    ).toBe(defaults[key]);
  });
});

it("takes a decimal fraction written without its leading zero", () => {
  expect(parseEnv(workersEnv, { PROVISIONING_FAILURE_RATE: ".5" }).PROVISIONING_FAILURE_RATE).toBe(
    0.5,
  );
  expect(
    parseEnv(workersEnv, { PROVISIONING_FAILURE_RATE: "0.25" }).PROVISIONING_FAILURE_RATE,
  ).toBe(0.25);
});

it("GDPR_RETENTION_DAYS and TENANT_DATA_RETENTION_DAYS left empty keep 30 days", () => {
  const env = parseEnv(workersEnv, { GDPR_RETENTION_DAYS: "", TENANT_DATA_RETENTION_DAYS: "" });
  expect(env.GDPR_RETENTION_DAYS).toBe(30);
  expect(env.TENANT_DATA_RETENTION_DAYS).toBe(30);
});
