import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type EffectiveStatus,
  type EntitlementInput,
  type Entitlements,
  effectiveStatus,
  type InstanceStatus,
  type Override,
  resolveEntitlements,
  type SubscriptionStatus,
  statusChangesAfter,
  withVersion,
} from "./entitlements";

const NOW = new Date("2025-06-15T12:00:00.000Z");
const DAY = 24 * 60 * 60 * 1000;

function at(offsetMs: number): Date {
  return new Date(NOW.getTime() + offsetMs);
}

function baseInput(patch: Partial<EntitlementInput> = {}): EntitlementInput {
  return {
    instance: { id: "inst-1", status: "active" },
    productCode: "pos",
    productFeatures: ["billing", "inventory", "reports", "sso"],
    subscription: { status: "active", startsAt: at(-30 * DAY), expiresAt: at(30 * DAY) },
    plan: {
      code: "pro",
      maxUsers: 25,
      features: ["billing", "inventory"],
      limits: { storage_gb: 50, api_calls: 1000 },
    },
    overrides: [],
    now: NOW,
    ...patch,
  };
}

const enable = (code: string): Override => ({ kind: "feature", code, type: "enable" });
const disable = (code: string): Override => ({ kind: "feature", code, type: "disable" });
const limit = (name: string, value: number): Override => ({ kind: "limit", name, value });

describe("resolveEntitlements: reglas con suscripción activa", () => {
  it("activa las features del plan y lista el resto del producto como false", () => {
    const r = resolveEntitlements(baseInput());
    expect(r.status).toBe("active");
    expect(r.features).toEqual({ billing: true, inventory: true, reports: false, sso: false });
    expect(r.instanceId).toBe("inst-1");
    expect(r.productCode).toBe("pos");
    expect(r.planCode).toBe("pro");
  });

  it("lista todas las features del producto aunque ninguna esté activa", () => {
    const input = baseInput();
    const r = resolveEntitlements({
      ...input,
      plan: { code: "free", maxUsers: 1, features: [], limits: {} },
    });
    expect(Object.keys(r.features).sort()).toEqual(["billing", "inventory", "reports", "sso"]);
    expect(Object.values(r.features).every((v) => v === false)).toBe(true);
  });

  it("un override Enable activa una feature que el plan no incluye", () => {
    const r = resolveEntitlements(baseInput({ overrides: [enable("reports")] }));
    expect(r.features.reports).toBe(true);
    expect(r.features.sso).toBe(false);
    expect(r.features.billing).toBe(true);
  });

  it("un override Disable desactiva una feature del plan", () => {
    const r = resolveEntitlements(baseInput({ overrides: [disable("billing")] }));
    expect(r.features.billing).toBe(false);
    expect(r.features.inventory).toBe(true);
  });

  it("Disable gana a Enable sin importar el orden", () => {
    const a = resolveEntitlements(baseInput({ overrides: [enable("sso"), disable("sso")] }));
    const b = resolveEntitlements(baseInput({ overrides: [disable("sso"), enable("sso")] }));
    expect(a.features.sso).toBe(false);
    expect(b.features.sso).toBe(false);
    const c = resolveEntitlements(
      baseInput({ overrides: [enable("billing"), disable("billing")] }),
    );
    expect(c.features.billing).toBe(false);
  });

  it("límites: override si existe, si no el del plan; max_users sale de plan.maxUsers", () => {
    const r = resolveEntitlements(baseInput({ overrides: [limit("storage_gb", 200)] }));
    expect(r.limits).toEqual({ max_users: 25, storage_gb: 200, api_calls: 1000 });
  });

  it("override de max_users y override a 0 (no se confunde con ausencia)", () => {
    const r = resolveEntitlements(
      baseInput({ overrides: [limit("max_users", 3), limit("api_calls", 0)] }),
    );
    expect(r.limits).toEqual({ max_users: 3, storage_gb: 50, api_calls: 0 });
  });

  it("un override de límite que el plan no define se añade", () => {
    const r = resolveEntitlements(baseInput({ overrides: [limit("webhooks", 7)] }));
    expect(r.limits.webhooks).toBe(7);
    expect(r.limits.max_users).toBe(25);
  });
});

describe("resolveEntitlements: nada activo fuera de una suscripción vigente", () => {
  const overrides = [enable("sso"), limit("storage_gb", 99)];

  const cases: { name: string; input: EntitlementInput; status: EffectiveStatus }[] = [
    ...(["provisioning", "failed", "suspended", "decommissioned"] as const).map((s) => ({
      name: `instancia ${s}`,
      input: baseInput({ instance: { id: "inst-1", status: s }, overrides }),
      status: s,
    })),
    ...(["pending", "suspended", "cancelled"] as const).map((s) => ({
      name: `suscripción ${s}`,
      input: baseInput({
        subscription: { status: s, startsAt: at(-DAY), expiresAt: null },
        overrides,
      }),
      status: s,
    })),
    {
      name: "sin suscripción",
      input: baseInput({ subscription: null, overrides }),
      status: "no_subscription",
    },
    {
      name: "vencida justo ahora (expiresAt == now)",
      input: baseInput({
        subscription: { status: "active", startsAt: at(-DAY), expiresAt: at(0) },
        overrides,
      }),
      status: "expired",
    },
    {
      name: "vencida ayer",
      input: baseInput({
        subscription: { status: "active", startsAt: at(-2 * DAY), expiresAt: at(-DAY) },
        overrides,
      }),
      status: "expired",
    },
    {
      name: "aún no empieza",
      input: baseInput({
        subscription: { status: "active", startsAt: at(1), expiresAt: null },
        overrides,
      }),
      status: "not_started",
    },
  ];

  for (const c of cases) {
    it(`${c.name}: status ${c.status}, features false y límites 0`, () => {
      const r = resolveEntitlements(c.input);
      expect(r.status).toBe(c.status);
      expect(effectiveStatus(c.input)).toBe(c.status);
      expect(r.features).toEqual({ billing: false, inventory: false, reports: false, sso: false });
      expect(r.limits).toEqual({ max_users: 0, storage_gb: 0, api_calls: 0 });
    });
  }

  // Los límites del producto, en 0: una app que pide uno no cae en su valor por defecto (quizá
  // más generoso que el de una suscripción suspendida, que también da 0).
  it("sin plan: status no_subscription, features false y los límites del producto en 0", () => {
    const input = baseInput({
      plan: null,
      overrides: [enable("sso")],
      productLimits: ["storage_gb"],
    });
    const r = resolveEntitlements(input);
    expect(r.status).toBe("no_subscription");
    expect(r.planCode).toBeNull();
    expect(r.features).toEqual({ billing: false, inventory: false, reports: false, sso: false });
    expect(r.limits).toEqual({ max_users: 0, storage_gb: 0 });
  });

  it("activa cuando startsAt == now y expiresAt es null", () => {
    const input = baseInput({
      subscription: { status: "active", startsAt: at(0), expiresAt: null },
    });
    expect(effectiveStatus(input)).toBe("active");
    expect(resolveEntitlements(input).features.billing).toBe(true);
  });

  it("activa un milisegundo antes de vencer", () => {
    const input = baseInput({
      subscription: { status: "active", startsAt: at(-DAY), expiresAt: at(1) },
    });
    expect(effectiveStatus(input)).toBe("active");
  });

  it("el estado de la instancia tiene prioridad sobre el de la suscripción", () => {
    const input = baseInput({
      instance: { id: "inst-1", status: "suspended" },
      subscription: { status: "cancelled", startsAt: at(DAY), expiresAt: at(-DAY) },
    });
    expect(effectiveStatus(input)).toBe("suspended");
  });
});

describe("statusChangesAfter: lo que el paso del tiempo cambia sin tocar la base", () => {
  const sub = (startsAt: Date, expiresAt: Date | null, status: SubscriptionStatus = "active") => ({
    subscription: { status, startsAt, expiresAt },
  });

  it("una suscripción activa que vence cambia (a expired) justo en expiresAt", () => {
    const input = baseInput(sub(at(-DAY), at(1_500)));
    expect(statusChangesAfter(input)).toEqual([at(1_500)]);
    expect(effectiveStatus({ ...input, now: at(1_499) })).toBe("active");
    expect(effectiveStatus({ ...input, now: at(1_500) })).toBe("expired");
  });

  it("una que aún no empieza cambia en startsAt y, si vence, otra vez en expiresAt", () => {
    expect(statusChangesAfter(baseInput(sub(at(10), null)))).toEqual([at(10)]);
    expect(statusChangesAfter(baseInput(sub(at(10), at(20))))).toEqual([at(10), at(20)]);
  });

  it("sin fechas futuras, o si otra cosa decide el estado, no cambia nunca", () => {
    expect(statusChangesAfter(baseInput(sub(at(-DAY), null)))).toEqual([]);
    expect(statusChangesAfter(baseInput(sub(at(-2 * DAY), at(-DAY))))).toEqual([]);
    expect(statusChangesAfter(baseInput(sub(at(-DAY), at(0))))).toEqual([]);
    expect(statusChangesAfter(baseInput(sub(at(-DAY), at(DAY), "cancelled")))).toEqual([]);
    expect(statusChangesAfter(baseInput({ subscription: null }))).toEqual([]);
    expect(statusChangesAfter(baseInput({ ...sub(at(-DAY), at(DAY)), plan: null }))).toEqual([]);
    const suspended = baseInput({
      ...sub(at(DAY), at(2 * DAY)),
      instance: { id: "inst-1", status: "suspended" },
    });
    expect(statusChangesAfter(suspended)).toEqual([]);
  });
});

describe("withVersion", () => {
  const doc: Entitlements = {
    instanceId: "inst-1",
    productCode: "pos",
    planCode: "pro",
    status: "active",
    features: { billing: true, inventory: false },
    limits: { max_users: 25, storage_gb: 50 },
  };

  it("produce una versión hex de 32 caracteres y conserva el contenido", async () => {
    const v = await withVersion(doc);
    expect(v.version).toMatch(/^[0-9a-f]{32}$/);
    const { version: _version, ...rest } = v;
    expect(rest).toEqual(doc);
  });

  it("es determinista sin importar el orden de inserción de las claves", async () => {
    const reordered: Entitlements = {
      limits: { storage_gb: 50, max_users: 25 },
      features: { inventory: false, billing: true },
      status: "active",
      planCode: "pro",
      productCode: "pos",
      instanceId: "inst-1",
    };
    const a = await withVersion(doc);
    const b = await withVersion(reordered);
    expect(b.version).toBe(a.version);
    expect((await withVersion(doc)).version).toBe(a.version);
  });

  it("cambia cuando cambia cualquier feature, límite, estado o plan", async () => {
    const base = (await withVersion(doc)).version;
    const variants: Entitlements[] = [
      { ...doc, features: { ...doc.features, inventory: true } },
      { ...doc, features: { ...doc.features, reports: false } },
      { ...doc, limits: { ...doc.limits, storage_gb: 51 } },
      { ...doc, limits: { ...doc.limits, api_calls: 0 } },
      { ...doc, status: "suspended" },
      { ...doc, planCode: "basic" },
      { ...doc, planCode: null },
      { ...doc, instanceId: "inst-2" },
    ];
    const versions = await Promise.all(variants.map(async (d) => (await withVersion(d)).version));
    for (const v of versions) expect(v).not.toBe(base);
    expect(new Set(versions).size).toBe(versions.length);
  });
});

// Modelo independiente de la regla del dominio para las propiedades.
const instanceStatuses: InstanceStatus[] = [
  "provisioning",
  "active",
  "failed",
  "suspended",
  "decommissioned",
];
const subscriptionStatuses: SubscriptionStatus[] = ["pending", "active", "suspended", "cancelled"];
const limitPool = ["storage_gb", "api_calls", "webhooks", "seats_extra", "exports"];

const scenarioArb = fc
  .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9_]{0,9}$/), { minLength: 1, maxLength: 12 })
  .chain((product) =>
    fc.record({
      product: fc.constant(product),
      planFeatures: fc.subarray(product),
      featureOverrides: fc.array(
        fc.record({
          code: fc.constantFrom(...product),
          type: fc.constantFrom<"enable" | "disable">("enable", "disable"),
        }),
        { maxLength: 15 },
      ),
      planLimits: fc.dictionary(fc.constantFrom(...limitPool), fc.nat({ max: 100_000 })),
      maxUsers: fc.nat({ max: 10_000 }),
      limitOverrides: fc.uniqueArray(
        fc.record({
          name: fc.constantFrom("max_users", ...limitPool),
          value: fc.nat({ max: 100_000 }),
        }),
        { selector: (o) => o.name, maxLength: 6 },
      ),
      instanceStatus: fc.constantFrom(...instanceStatuses),
      subscription: fc.option(
        fc.record({
          status: fc.constantFrom(...subscriptionStatuses),
          startOffset: fc.integer({ min: -10 * DAY, max: 10 * DAY }),
          endOffset: fc.option(fc.integer({ min: -10 * DAY, max: 10 * DAY }), { nil: null }),
        }),
        { nil: null },
      ),
      hasPlan: fc.boolean(),
      // Sesgo hacia escenarios activos para que las reglas de override se ejerciten a menudo.
      forceActive: fc.boolean(),
    }),
  );

type Scenario = typeof scenarioArb extends fc.Arbitrary<infer T> ? T : never;

function toInput(s: Scenario): EntitlementInput {
  const sub = s.forceActive
    ? { status: "active" as const, startOffset: -DAY, endOffset: null }
    : s.subscription;
  const overrides: Override[] = [
    ...s.featureOverrides.map((o) => ({ kind: "feature" as const, ...o })),
    ...s.limitOverrides.map((o) => ({ kind: "limit" as const, ...o })),
  ];
  return {
    instance: { id: "inst-p", status: s.forceActive ? "active" : s.instanceStatus },
    productCode: "prod",
    productFeatures: s.product,
    subscription: sub
      ? {
          status: sub.status,
          startsAt: at(sub.startOffset),
          expiresAt: sub.endOffset === null ? null : at(sub.endOffset),
        }
      : null,
    plan:
      s.forceActive || s.hasPlan
        ? { code: "p", maxUsers: s.maxUsers, features: s.planFeatures, limits: s.planLimits }
        : null,
    overrides,
    now: NOW,
  };
}

function expectedStatus(input: EntitlementInput): EffectiveStatus {
  const { instance, subscription: sub, plan, now } = input;
  if (instance.status !== "active") return instance.status;
  if (sub === null || plan === null) return "no_subscription";
  if (sub.status !== "active") return sub.status;
  if (now < sub.startsAt) return "not_started";
  if (sub.expiresAt !== null && sub.expiresAt <= now) return "expired";
  return "active";
}

describe("propiedades de resolveEntitlements", () => {
  it("status coincide con el modelo independiente", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const input = toInput(s);
        expect(effectiveStatus(input)).toBe(expectedStatus(input));
        expect(resolveEntitlements(input).status).toBe(expectedStatus(input));
      }),
    );
  });

  it("feature = active && (inPlan || hasEnable) && !hasDisable para cada código", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const input = toInput(s);
        const active = expectedStatus(input) === "active";
        const r = resolveEntitlements(input);
        expect(Object.keys(r.features).sort()).toEqual([...s.product].sort());
        for (const code of s.product) {
          const inPlan = input.plan?.features.includes(code) ?? false;
          const hasEnable = s.featureOverrides.some((o) => o.code === code && o.type === "enable");
          const hasDisable = s.featureOverrides.some(
            (o) => o.code === code && o.type === "disable",
          );
          expect(r.features[code]).toBe(active && (inPlan || hasEnable) && !hasDisable);
        }
      }),
    );
  });

  it("límites = override ?? plan (y 0 si no está activo)", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const input = toInput(s);
        const active = expectedStatus(input) === "active";
        const r = resolveEntitlements(input);
        const expected: Record<string, number> = {};
        if (input.plan === null) {
          // Sin plan nada está activo: max_users y los límites con override, en 0.
          expect(active).toBe(false);
          for (const name of ["max_users", ...s.limitOverrides.map((o) => o.name)]) {
            expected[name] = 0;
          }
          expect(r.limits).toEqual(expected);
          return;
        }
        const planValues: Record<string, number> = { ...s.planLimits, max_users: s.maxUsers };
        const names = new Set([...Object.keys(planValues), ...s.limitOverrides.map((o) => o.name)]);
        for (const name of names) {
          const override = s.limitOverrides.find((o) => o.name === name)?.value;
          const value = override ?? planValues[name];
          if (value !== undefined) expected[name] = active ? value : 0;
        }
        expect(r.limits).toEqual(expected);
      }),
    );
  });

  it("añadir un Disable nunca activa nada y siempre apaga ese código", () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), (s, pick) => {
        const input = toInput(s);
        const code = s.product[pick % s.product.length] ?? "";
        const before = resolveEntitlements(input);
        const after = resolveEntitlements({
          ...input,
          overrides: [...input.overrides, disable(code)],
        });
        expect(after.features[code]).toBe(false);
        for (const c of s.product) {
          if (after.features[c]) expect(before.features[c]).toBe(true);
          if (c !== code) expect(after.features[c]).toBe(before.features[c]);
        }
      }),
    );
  });

  it("statusChangesAfter + resolver en cada cambio = resolver de nuevo en cualquier instante", () => {
    fc.assert(
      fc.property(scenarioArb, fc.integer({ min: 0, max: 12 * DAY }), (s, later) => {
        const input = toInput(s);
        const t = at(later);
        const changes = statusChangesAfter(input);
        for (const c of changes) expect(c.getTime()).toBeGreaterThan(NOW.getTime());
        // Lo que rige en t: el último cambio ya ocurrido (o lo resuelto al cargar).
        const last = changes.filter((c) => c <= t).at(-1);
        const known = resolveEntitlements(last ? { ...input, now: last } : input);
        expect(known).toEqual(resolveEntitlements({ ...input, now: t }));
      }),
    );
  });

  it("una instancia no activa deja todas las features en false y límites en 0", () => {
    const nonActive = fc.constantFrom(...instanceStatuses.filter((st) => st !== "active"));
    fc.assert(
      fc.property(scenarioArb, nonActive, (s, status) => {
        const input = { ...toInput(s), instance: { id: "inst-p", status } };
        const r = resolveEntitlements(input);
        expect(r.status).toBe(status);
        expect(Object.values(r.features).every((v) => v === false)).toBe(true);
        expect(Object.keys(r.features).length).toBe(s.product.length);
        expect(Object.values(r.limits).every((v) => v === 0)).toBe(true);
      }),
    );
  });
});
