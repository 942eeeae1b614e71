import { describe, expect, it } from "vitest";
import { type EntitlementInput, resolveEntitlements, withVersion } from "./entitlements";
import { evaluateAllFlags, evaluateFlag, overriddenKeys, parseOfrepRequest } from "./ofrep";

const NOW = new Date("2025-06-15T12:00:00.000Z");
const ID = "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

function input(patch: Partial<EntitlementInput> = {}): EntitlementInput {
  return {
    instance: { id: ID, status: "active" },
    productCode: "FARUTECH_VET",
    productFeatures: ["BATCH_CONTROL", "DIGITAL_RECORDS", "WHATSAPP_INTEGRATION", "STOCK_ALERTS"],
    subscription: { status: "active", startsAt: new Date("2025-01-01"), expiresAt: null },
    plan: {
      code: "VET_PROFESSIONAL",
      maxUsers: 25,
      features: ["BATCH_CONTROL", "DIGITAL_RECORDS"],
      limits: { storage_gb: 50 },
    },
    overrides: [
      { kind: "feature", code: "BATCH_CONTROL", type: "disable" },
      { kind: "feature", code: "WHATSAPP_INTEGRATION", type: "enable" },
      { kind: "limit", name: "max_users", value: 100 },
    ],
    now: NOW,
    ...patch,
  };
}

async function flagsOf(i: EntitlementInput) {
  const ent = await withVersion(resolveEntitlements(i));
  return { ent, overridden: overriddenKeys(i) };
}

describe("OFREP evaluation", () => {
  it("maps plan values to STATIC and override decisions to TARGETING_MATCH", async () => {
    const { ent, overridden } = await flagsOf(input());
    const byKey = Object.fromEntries(
      evaluateAllFlags(ent, overridden).map((f) => [f.key, [f.value, f.reason]]),
    );
    expect(byKey).toEqual({
      BATCH_CONTROL: [false, "TARGETING_MATCH"],
      DIGITAL_RECORDS: [true, "STATIC"],
      STOCK_ALERTS: [false, "STATIC"],
      WHATSAPP_INTEGRATION: [true, "TARGETING_MATCH"],
      max_users: [100, "TARGETING_MATCH"],
      storage_gb: [50, "STATIC"],
    });
    expect(evaluateFlag(ent, overridden, "DIGITAL_RECORDS")).toEqual({
      key: "DIGITAL_RECORDS",
      value: true,
      reason: "STATIC",
      variant: "on",
      metadata: { productCode: "FARUTECH_VET", planCode: "VET_PROFESSIONAL", status: "active" },
    });
  });

  it("marks every flag DISABLED with false / 0 when the instance or subscription is not active", async () => {
    const active = await flagsOf(input());
    const all = evaluateAllFlags(active.ent, active.overridden).map((f) => f.key);
    expect(all.length).toBeGreaterThan(0);
    for (const patch of [
      { instance: { id: ID, status: "suspended" as const } },
      {
        subscription: {
          status: "cancelled" as const,
          startsAt: new Date("2025-01-01"),
          expiresAt: null,
        },
      },
    ]) {
      const { ent, overridden } = await flagsOf(input(patch));
      const flags = evaluateAllFlags(ent, overridden);
      // Una instancia inactiva sigue nombrando todos sus flags (apagados), no una lista vacía.
      expect(flags.map((f) => f.key)).toEqual(all);
      for (const flag of flags) {
        expect(flag.reason).toBe("DISABLED");
        expect(flag.value === false || flag.value === 0).toBe(true);
      }
    }
  });

  it("knows only the product's features and limits", async () => {
    const { ent, overridden } = await flagsOf(input());
    for (const key of ["NOPE", "toString", "__proto__", "constructor"]) {
      expect(evaluateFlag(ent, overridden, key)).toBeUndefined();
    }
  });
});

describe("OFREP request parsing", () => {
  const code = (raw: string) => {
    const r = parseOfrepRequest(raw);
    return r.ok ? r.instanceId : r.failure.errorCode;
  };
  it("takes the tenant instance id from context.targetingKey", () => {
    expect(code(JSON.stringify({ context: { targetingKey: ID.toUpperCase(), plan: "x" } }))).toBe(
      ID,
    );
  });
  it("answers the protocol's error codes", () => {
    expect(code("{nope")).toBe("PARSE_ERROR");
    expect(code("[1]")).toBe("PARSE_ERROR");
    expect(code("")).toBe("TARGETING_KEY_MISSING");
    expect(code("{}")).toBe("TARGETING_KEY_MISSING");
    expect(code(JSON.stringify({ context: {} }))).toBe("TARGETING_KEY_MISSING");
    expect(code(JSON.stringify({ context: "x" }))).toBe("INVALID_CONTEXT");
    expect(code(JSON.stringify({ context: { targetingKey: 42 } }))).toBe("INVALID_CONTEXT");
    expect(code(JSON.stringify({ context: { targetingKey: "vet-norte" } }))).toBe(
      "INVALID_CONTEXT",
    );
  });
});
