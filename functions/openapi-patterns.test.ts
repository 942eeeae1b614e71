import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminHarness, startAdminHarness } from "../test/support/admin";

type Node = Record<string, unknown>;

const isNode = (v: unknown): v is Node => typeof v === "object" && v !== null && !Array.isArray(v);

interface Found {
  at: string;
  pattern: string;
}

// Cada `pattern` del documento, con su ubicación (schema.pattern y propertyNames.pattern).
function patternsOf(value: unknown, at = "#"): Found[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => patternsOf(v, `${at}/${i}`));
  if (!isNode(value)) return [];
  return Object.entries(value).flatMap(([key, child]) =>
    key === "pattern" && typeof child === "string"
      ? [{ at, pattern: child }]
      : patternsOf(child, `${at}/${key}`),
  );
}

// El ejemplo documentado frente a los patrones de su propio esquema (y de lo que contiene).
function patternMismatches(doc: Node, schema: unknown, example: unknown, at: string): string[] {
  if (!isNode(schema)) return [];
  if (typeof schema.$ref === "string") {
    const name = schema.$ref.replace("#/components/schemas/", "");
    const schemas = (doc.components as Node).schemas as Node;
    return patternMismatches(doc, schemas[name], example, at);
  }
  const out: string[] = [];
  if (typeof schema.pattern === "string" && typeof example === "string") {
    // JSON Schema: expresión ECMA-262 sin banderas; ajv la compila con "u". Ambas deben aceptarlo.
    for (const flags of ["", "u"]) {
      if (!new RegExp(schema.pattern, flags).test(example)) {
        out.push(`${at}: ${JSON.stringify(example)} !~ /${schema.pattern}/${flags}`);
      }
    }
  }
  if (Array.isArray(example) && schema.items) {
    example.forEach((item, i) => {
      out.push(...patternMismatches(doc, schema.items, item, `${at}/${i}`));
    });
  }
  if (isNode(example)) {
    const properties = isNode(schema.properties) ? schema.properties : {};
    for (const [key, value] of Object.entries(example)) {
      const sub = properties[key] ?? schema.additionalProperties;
      out.push(...patternMismatches(doc, sub, value, `${at}/${key}`));
      out.push(...patternMismatches(doc, schema.propertyNames, key, `${at}/${key} (key)`));
    }
  }
  for (const keyword of ["allOf", "anyOf", "oneOf"] as const) {
    const branches = schema[keyword];
    if (!Array.isArray(branches)) continue;
    const results = branches.map((b, i) =>
      patternMismatches(doc, b, example, `${at}/${keyword}/${i}`),
    );
    // allOf: todas deben aceptarlo; anyOf/oneOf: basta una.
    if (keyword === "allOf") out.push(...results.flat());
    else if (!results.some((r) => r.length === 0)) out.push(...results.flat());
  }
  return out;
}

// Cada nodo con `example` (o `examples`) se compara con el esquema en el que está documentado.
function exampleMismatches(doc: Node, value: unknown, at = "#"): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => exampleMismatches(doc, v, `${at}/${i}`));
  if (!isNode(value)) return [];
  const out: string[] = [];
  // Un parámetro documenta su ejemplo junto a `schema`; un esquema, junto a sus palabras clave.
  const schema = isNode(value.schema) && !("type" in value) ? value.schema : value;
  if ("example" in value) out.push(...patternMismatches(doc, schema, value.example, at));
  if (Array.isArray(value.examples)) {
    value.examples.forEach((ex, i) => {
      out.push(...patternMismatches(doc, schema, ex, `${at}/examples/${i}`));
    });
  }
  for (const [key, child] of Object.entries(value)) {
    if (key !== "example" && key !== "examples") {
      out.push(...exampleMismatches(doc, child, `${at}/${key}`));
    }
  }
  return out;
}

describe("patterns in the OpenAPI document", () => {
  let h: AdminHarness;
  let doc: Node;

  beforeAll(async () => {
    h = await startAdminHarness("pglite");
    const res = await h.request<Node>("GET", "/openapi.json");
    expect(res.status).toBe(200);
    doc = res.body;
  });
  afterAll(async () => h?.stop());

  it("are ECMAScript regexes without flags, meaning the same with and without u", () => {
    const found = patternsOf(doc);
    expect(found.length).toBeGreaterThan(10);
    for (const { at, pattern } of found) {
      // Un "/u" o "/i" final delata el toString() de un RegExp con banderas.
      expect(pattern, at).not.toMatch(/\/[dgimsuvy]+$/);
      expect(() => new RegExp(pattern), at).not.toThrow();
      expect(() => new RegExp(pattern, "u"), at).not.toThrow();
    }
  });

  it("accept their own documented examples", () => {
    expect(exampleMismatches(doc, doc)).toEqual([]);
  });

  it("validate real GET /api/admin-clients responses with ajv", async () => {
    const admin = await h.token(["platform_admin"]);
    for (const name of ["CRM de ventas", "Facturación ñandú 😀", "x"]) {
      const created = await h.request("POST", "/api/admin-clients", {
        token: admin,
        json: { name, roles: ["support"] },
      });
      expect(created.status).toBe(201);
    }
    const list = await h.request<{ items: { name: string }[] }>("GET", "/api/admin-clients", {
      token: admin,
    });
    expect(list.status).toBe(200);
    expect(list.body.items.length).toBeGreaterThanOrEqual(3);

    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema({ ...doc, $id: "openapi.json" });
    const validate = ajv.getSchema(
      "openapi.json#/paths/~1api~1admin-clients/get/responses/200/content/application~1json/schema",
    );
    if (!validate) throw new Error("list response schema not found");
    expect(validate(list.body), JSON.stringify(validate.errors)).toBe(true);
  });
});
