import { sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSecretBox, generateEncryptionKey } from "../core/secret-box";
import { seedDemo } from "../db/seed";
import { rowsOf } from "../db/types";
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
describe.each(["postgres", "pglite"] as const)("admin API fuzzing on %s", (kind) => {
  let h: AdminHarness;
  let operations: Operation[];
  let token: string;
  let doc: OpenApiDoc;
  let realValues: string[];

  beforeAll(async () => {
    // Con clave de cifrado, como en producción: webhooks y cadenas de conexión también se prueban.
    h = await startAdminHarness(kind, undefined, {
      secretBox: await createSecretBox(JSON.stringify([generateEncryptionKey("fuzz")])),
    });
    await seedDemo(h.db.handle.db);
    token = await h.token(["platform_admin"]);
    doc = (await (await h.app.request("/openapi.json")).json()) as OpenApiDoc;
    // Ids y códigos reales de la demo: el azar llega así más allá del 404.
    const ids = await h.db.handle.db.execute(
      sql.raw(
        ID_TABLES.map((t) => `select id::text as value from ${t}`).join(" union all ") +
          " union all select code from products union all select code from modules" +
          " union all select code from features union all select code from plans",
      ),
    );
    realValues = rowsOf<{ value: string }>(ids).map((r) => r.value);
    operations = Object.entries(doc.paths).flatMap(([path, ops]) =>
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
    // Cada operación recibe su parte de las entradas: elegida al azar, una ruta podía quedarse
    // sin ninguna llamada en una corrida (~1 %) y su 5xx no verse.
    const runsPerOperation = Math.ceil(600 / operations.length);
    const called = new Set<Operation>();
    for (const op of operations) {
      await fc.assert(
        fc.asyncProperty(
          fc.array(pathValue, { minLength: 4, maxLength: 4 }),
          fc.dictionary(fc.string({ maxLength: 12 }), queryValue, { maxKeys: 3 }),
          fc.array(queryValue, { minLength: 6, maxLength: 6 }),
          bodyValue,
          headerValue,
          fc.boolean(),
          async (pathValues, extraQuery, knownQuery, body, headers, withToken) => {
            called.add(op);
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
              // Y el documento declara ese estado para la operación.
              expect(
                doc.paths[op.path]?.[op.method.toLowerCase()]?.responses?.[res.status],
                `${op.method} ${op.path} ${res.status} undeclared`,
              ).toBeDefined();
              expect(text).not.toMatch(/\bat .+\.(ts|js):\d+/);
            }
          },
        ),
        { numRuns: runsPerOperation },
      );
    }
    expect(called.size).toBe(operations.length);
  }, 180_000);

  it("never answers 5xx to schema-shaped requests that reach the handlers", async () => {
    const schemaOps = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).map(([method, op]) => ({ path, method, op })),
    );
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...schemaOps).chain(({ path, method, op }) =>
          fc.record({
            method: fc.constant(method.toUpperCase()),
            path: fc.constant(path),
            op: fc.constant(op),
            params: fc.tuple(
              ...(op.parameters ?? []).map((p) =>
                fc.option(schemaValue(doc, p.schema ?? {}, p.name, realValues), {
                  nil: undefined,
                  freq: p.required ? 20 : 3,
                }),
              ),
            ),
            body: bodyFor(doc, op, realValues),
            withToken: fc.integer({ min: 0, max: 9 }).map((n) => n < 8),
          }),
        ),
        async ({ method, path, op, params, body, withToken }) => {
          let pathname = path;
          const qs = new URLSearchParams();
          (op.parameters ?? []).forEach((p, i) => {
            const value = params[i];
            const text = typeof value === "string" ? value : JSON.stringify(value ?? "x");
            if (p.in === "path") {
              pathname = pathname.replace(`{${p.name}}`, encodeURIComponent(text));
            } else if (p.in === "query" && value !== undefined) {
              qs.set(p.name, text);
            }
          });
          const res = await h.app.request(`${pathname}?${qs.toString()}`, {
            method,
            headers: {
              "content-type": "application/json",
              ...(withToken ? { authorization: `Bearer ${token}` } : {}),
            },
            ...(method === "GET" || method === "DELETE" || body === undefined
              ? {}
              : { body: JSON.stringify(body) }),
          });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const text = await res.text();
          if (res.status >= 500) throw new Error(`${method} ${pathname} → ${res.status}: ${text}`);
          if (res.status >= 400) {
            expect(res.headers.get("content-type"), `${method} ${pathname}`).toContain(
              "application/problem+json",
            );
            expect(
              op.responses?.[res.status],
              `${method} ${path} ${res.status} undeclared`,
            ).toBeDefined();
          }
        },
      ),
      { numRuns: 800 },
    );
    // El azar pasó de la validación: hubo altas, lecturas y conflictos o reglas de negocio.
    expect(statuses.get(200)).toBeGreaterThan(0);
    expect(statuses.get(201)).toBeGreaterThan(0);
    expect((statuses.get(409) ?? 0) + (statuses.get(422) ?? 0)).toBeGreaterThan(0);
  }, 180_000);
});

// Tablas cuyos ids aparecen en rutas, filtros o cuerpos de la API.
const ID_TABLES = [
  "products",
  "modules",
  "features",
  "plans",
  "customers",
  "tenant_instances",
  "subscriptions",
  "subscription_feature_overrides",
  "provisioning_tasks",
  "api_clients",
  "webhook_endpoints",
  "dlq_entries",
  "invoices",
];

interface JsonSchema {
  $ref?: string;
  type?: string | string[];
  format?: string;
  pattern?: string;
  enum?: unknown[];
  example?: unknown;
  minimum?: number;
  maximum?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  additionalProperties?: boolean | JsonSchema;
}

interface OpenApiOperation {
  parameters?: { name: string; in: string; required?: boolean; schema?: JsonSchema }[];
  requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
  responses?: Record<string, unknown>;
}

interface OpenApiDoc {
  paths: Record<string, Record<string, OpenApiOperation>>;
  components?: { schemas?: Record<string, JsonSchema> };
}

function resolve(doc: OpenApiDoc, schema: JsonSchema): JsonSchema {
  if (!schema.$ref) return schema;
  const name = schema.$ref.split("/").pop() ?? "";
  return doc.components?.schemas?.[name] ?? {};
}

/**
 * Un valor para un campo según su esquema OpenAPI: casi siempre plausible (su ejemplo, un valor
 * que cumple el patrón, un id real), a veces basura. Así se llega a las reglas de negocio y a las
 * restricciones de la base, no solo a la validación.
 */
function schemaValue(
  doc: OpenApiDoc,
  raw: JsonSchema,
  name: string,
  realValues: string[],
  depth = 0,
): fc.Arbitrary<unknown> {
  const schema = resolve(doc, raw);
  const junk = fc.oneof(withNul, fc.jsonValue({ maxDepth: 2 }));
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants && depth < 3) {
    return fc.oneof(...variants.map((v) => schemaValue(doc, v, name, realValues, depth + 1)));
  }
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  let plausible: fc.Arbitrary<unknown>;
  if (schema.enum) plausible = fc.constantFrom(...schema.enum);
  else if (schema.format === "uuid" || /Id$/.test(name)) plausible = fc.constantFrom(...realValues);
  else if (type === "string" && schema.pattern) {
    plausible = fc.oneof(matching(schema.pattern), fc.constantFrom(...realValues));
  } else if (type === "string" && schema.format === "date-time") {
    plausible = fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
  } else if (type === "string") {
    plausible = fc.oneof(
      fc.string({ minLength: 1, maxLength: 30 }),
      fc.constantFrom(...realValues),
    );
  } else if (type === "integer" || type === "number") {
    plausible = fc.integer({
      min: Math.max(schema.minimum ?? -1000, -1_000_000),
      max: Math.min(schema.maximum ?? 1_000_000, 1_000_000),
    });
  } else if (type === "boolean") plausible = fc.boolean();
  else if (type === "array" && depth < 3) {
    plausible = fc.array(schemaValue(doc, schema.items ?? {}, name, realValues, depth + 1), {
      maxLength: 4,
    });
  } else if (type === "object" && depth < 3) {
    plausible = objectValue(doc, schema, realValues, depth);
  } else plausible = fc.jsonValue({ maxDepth: 1 });
  const example =
    schema.example === undefined ? [] : [{ arbitrary: fc.constant(schema.example), weight: 3 }];
  return fc.oneof({ arbitrary: plausible, weight: 6 }, ...example, { arbitrary: junk, weight: 1 });
}

/** Cadenas que cumplen el patrón; fast-check no sabe generar lookaheads: entonces, cualquiera. */
function matching(pattern: string): fc.Arbitrary<string> {
  try {
    return fc.stringMatching(new RegExp(pattern));
  } catch {
    return fc.string({ maxLength: 30 });
  }
}

function objectValue(
  doc: OpenApiDoc,
  schema: JsonSchema,
  realValues: string[],
  depth: number,
): fc.Arbitrary<unknown> {
  const properties = Object.entries(schema.properties ?? {});
  if (properties.length === 0) {
    const extra =
      typeof schema.additionalProperties === "object" ? schema.additionalProperties : {};
    return fc.dictionary(
      fc.oneof(
        fc.constantFrom("max_users", "ADVANCED_REPORTS", "storage_gb"),
        fc.constantFrom(...realValues),
      ),
      schemaValue(doc, extra, "value", realValues, depth + 1),
      { maxKeys: 3 },
    );
  }
  const required = new Set(schema.required ?? []);
  return fc
    .tuple(
      ...properties.map(([key, sub]) =>
        fc.option(schemaValue(doc, sub, key, realValues, depth + 1), {
          nil: undefined,
          freq: required.has(key) ? 30 : 3,
        }),
      ),
    )
    .map((values) =>
      Object.fromEntries(
        properties.flatMap(([key], i) => (values[i] === undefined ? [] : [[key, values[i]]])),
      ),
    );
}

function bodyFor(
  doc: OpenApiDoc,
  op: OpenApiOperation,
  realValues: string[],
): fc.Arbitrary<unknown> {
  const schema = op.requestBody?.content?.["application/json"]?.schema;
  if (!schema) return fc.constant(undefined);
  return schemaValue(doc, schema, "body", realValues);
}
