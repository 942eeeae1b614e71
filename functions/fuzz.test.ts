import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../db/seed";
import { type AdminHarness, startAdminHarness } from "../test/support/admin";

interface Operation {
  method: string;
  path: string;
  params: string[];
  query: string[];
}

// NUL explícito: al azar casi nunca sale, y Postgres lo rechaza en text y jsonb.
const withNul = fc.string({ maxLength: 10 }).map((s) => `${s}\u0000x`);
const pathValue = fc.oneof(
  withNul,
  fc.uuid(),
  fc.string({ maxLength: 40 }),
  // Cualquier punto de código, NUL incluido (Postgres no lo guarda en text).
  fc.string({ unit: "binary", maxLength: 20 }),
  fc.constantFrom("FARUTECH_VET", "by-code", "%00", "..", "a".repeat(300), "0"),
);
const queryValue = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: "binary", maxLength: 20 }),
  withNul,
  fc.integer().map(String),
  fc.uuid(),
  fc.constant(""),
);
const bodyValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.jsonValue({ maxDepth: 3, stringUnit: "binary" }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 200 }),
  fc.constant("{"),
  fc.constant('{"customerId":null}'),
  fc
    .dictionary(
      fc.constantFrom(
        "code",
        "name",
        "planId",
        "productId",
        "limits",
        "includedFeatures",
        "max_users",
      ),
      fc.oneof(fc.jsonValue({ maxDepth: 2 }), withNul),
    )
    .map((v) => JSON.stringify(v)),
);
const headerValue = fc.record(
  {
    "content-type": fc.constantFrom(
      "application/json",
      "text/plain",
      "application/x-www-form-urlencoded",
      "",
    ),
    "if-match": fc.oneof(
      fc.constantFrom('"v1"', '"v999"', "*", 'W/"x"'),
      fc.string({ maxLength: 20 }),
    ),
    "idempotency-key": fc.oneof(fc.uuid(), fc.string({ maxLength: 300 })),
  },
  { requiredKeys: [] },
);

// Cuerpos, consultas y cabeceras al azar contra cada ruta: nunca un 5xx, y todo 4xx es problem+json.
describe("admin API fuzzing", () => {
  let h: AdminHarness;
  let operations: Operation[];
  let token: string;

  beforeAll(async () => {
    h = await startAdminHarness("postgres");
    await seedDemo(h.db.handle.db);
    token = await h.token(["platform_admin"]);
    const doc = (await (await h.app.request("/openapi.json")).json()) as {
      paths: Record<string, Record<string, { parameters?: { name: string; in: string }[] }>>;
    };
    // /readyz responde 503 a propósito cuando una dependencia falla (aquí no hay broker).
    operations = Object.entries(doc.paths)
      .filter(([path]) => path !== "/readyz")
      .flatMap(([path, ops]) =>
        Object.entries(ops).map(([method, op]) => ({
          method: method.toUpperCase(),
          path,
          params: (op.parameters ?? []).filter((p) => p.in === "path").map((p) => p.name),
          query: (op.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name),
        })),
      );
  });
  afterAll(async () => h?.stop());

  it("never answers 5xx and always answers 4xx as problem+json", async () => {
    expect(operations.length).toBeGreaterThan(5);
    await fc.assert(
      fc.asyncProperty(
        fc.nat(),
        fc.array(pathValue, { minLength: 4, maxLength: 4 }),
        fc.dictionary(fc.string({ maxLength: 12 }), queryValue, { maxKeys: 3 }),
        fc.array(queryValue, { minLength: 6, maxLength: 6 }),
        bodyValue,
        headerValue,
        fc.boolean(),
        async (pick, pathValues, extraQuery, knownQuery, body, headers, withToken) => {
          const op = operations[pick % operations.length];
          if (!op) return;
          let url = op.path;
          op.params.forEach((name, i) => {
            url = url.replace(`{${name}}`, encodeURIComponent(pathValues[i] ?? "x"));
          });
          const qs = new URLSearchParams(extraQuery);
          op.query.forEach((name, i) => {
            qs.set(name, knownQuery[i] ?? "");
          });
          const init: RequestInit = {
            method: op.method,
            headers: { ...headers, ...(withToken ? { authorization: `Bearer ${token}` } : {}) },
            ...(op.method === "GET" || op.method === "HEAD" ? {} : { body }),
          };
          const res = await h.app.request(`${url}?${qs.toString()}`, init);
          const text = await res.text();
          if (res.status >= 500) throw new Error(`${op.method} ${url} → ${res.status}: ${text}`);
          if (res.status >= 400) {
            expect(res.headers.get("content-type"), `${op.method} ${url}`).toContain(
              "application/problem+json",
            );
            expect(text).not.toMatch(/\bat .+\.(ts|js):\d+/);
          }
        },
      ),
      { numRuns: 600 },
    );
  }, 180_000);
});
