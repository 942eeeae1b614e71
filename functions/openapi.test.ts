import { compileErrors, validate } from "@readme/openapi-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminHarness, startAdminHarness } from "../test/support/admin";

interface OpenApiDoc {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        operationId?: string;
        requestBody?: unknown;
        parameters?: { $ref?: string; name?: string }[];
        responses?: Record<string, { headers?: Record<string, unknown> }>;
      }
    >
  >;
  components?: {
    schemas?: Record<string, SchemaNode>;
    parameters?: Record<string, { name: string; in: string }>;
  };
}
interface SchemaNode {
  description?: string;
  minProperties?: number;
  uniqueItems?: boolean;
  format?: string;
  type?: string | string[];
  example?: unknown;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  oneOf?: SchemaNode[];
  allOf?: SchemaNode[];
  $ref?: string;
}

const UNDOCUMENTED = new Set(["/openapi.json", "/docs"]);

// El documento se valida con un validador independiente y cubre cada ruta registrada.
describe("OpenAPI document", () => {
  let h: AdminHarness;
  let doc: OpenApiDoc;

  beforeAll(async () => {
    h = await startAdminHarness("pglite");
    const res = await h.request<OpenApiDoc>("GET", "/openapi.json");
    expect(res.status).toBe(200);
    doc = res.body;
  });
  afterAll(async () => h?.stop());

  it("is a valid OpenAPI 3.1 document", async () => {
    expect(doc.openapi).toBe("3.1.0");
    const result = await validate(structuredClone(doc) as never);
    if (!result.valid) throw new Error(compileErrors(result));
    expect(result.valid).toBe(true);
  });

  it("documents every registered route, each with an operationId and error responses", () => {
    const registered = h.app.routes
      .filter((r) => r.method !== "ALL" && !UNDOCUMENTED.has(r.path))
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((method) => `${method} ${path}`),
    );
    expect(new Set(registered).size).toBeGreaterThan(5);
    for (const route of new Set(registered)) expect(documented).toContain(route);
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        expect(op.operationId, `${method} ${path}`).toBeTruthy();
        if (path.startsWith("/api/")) {
          expect(Object.keys(op.responses ?? {}), `${method} ${path}`).toEqual(
            expect.arrayContaining(["400", "401", "403"]),
          );
        }
      }
    }
  });

  it("documents 413 and 415 on every operation that takes a body, and only there", async () => {
    const withBody: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const statuses = Object.keys(op.responses ?? {});
        if (!op.requestBody) {
          // Sin cuerpo no hay tipo que rechazar: un cuerpo de más es un 400 (functions/bodyless.test.ts).
          expect(statuses, `${method} ${path}`).not.toContain("415");
          continue;
        }
        withBody.push(`${method} ${path}`);
        expect(statuses, `${method} ${path}`).toEqual(expect.arrayContaining(["413", "415"]));
        for (const status of ["413", "415"]) {
          const response = op.responses?.[status] as { content?: Record<string, unknown> };
          expect(Object.keys(response.content ?? {}), `${method} ${path} ${status}`).toEqual([
            "application/problem+json",
          ]);
        }
      }
    }
    expect(withBody.length).toBeGreaterThan(10);
    // Lo documentado es lo que responde la API: texto plano → 415, más de 256 KiB → 413.
    const token = await h.token(["platform_admin"]);
    const plain = await h.request("POST", "/api/customers", {
      token,
      body: "legalName=x",
      headers: { "content-type": "text/plain" },
    });
    expect(plain.status).toBe(415);
    const huge = await h.request("POST", "/api/customers", {
      token,
      json: { legalName: "x".repeat(300 * 1024) },
    });
    expect(huge.status).toBe(413);
  });

  it("documents the protocol headers: Idempotency-Key on every POST, X-Correlation-Id everywhere", () => {
    const headerNames = (refs: { $ref?: string }[] = []) =>
      refs.map((p) => doc.components?.parameters?.[p.$ref?.split("/").at(-1) ?? ""]?.name);
    let posts = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith("/api/")) continue;
      for (const [method, op] of Object.entries(ops)) {
        const names = headerNames(op.parameters);
        expect(names, `${method} ${path}`).toContain("X-Correlation-Id");
        expect(names, `${method} ${path}`).toContain("X-Request-Id");
        if (method !== "post") {
          expect(names, `${method} ${path}`).not.toContain("Idempotency-Key");
          continue;
        }
        posts++;
        expect(names, `${method} ${path}`).toContain("Idempotency-Key");
        const ok = Object.entries(op.responses ?? {}).filter(([status]) => status.startsWith("2"));
        expect(ok.length, `${method} ${path}`).toBeGreaterThan(0);
        for (const [, response] of ok) {
          expect(Object.keys(response.headers ?? {})).toContain("idempotent-replayed");
        }
      }
    }
    expect(posts).toBeGreaterThan(10);
    // Y lo que el documento promete es verdad: cada POST de /api pasa por el middleware.
    const idempotent = new Set(
      h.app.routes
        .filter((r) => r.method === "POST" && r.handler.name === "idempotencyMiddleware")
        .map((r) => r.path),
    );
    const postRoutes = new Set(
      h.app.routes
        .filter((r) => r.method === "POST" && r.path.startsWith("/api/"))
        .map((r) => r.path),
    );
    expect(postRoutes.size).toBe(posts);
    expect([...postRoutes].filter((p) => !idempotent.has(p))).toEqual([]);
  });

  it("declares an ETag on every single-resource GET", () => {
    // La cadena de conexión es un secreto que se sirve con no-store: no hay nada que revalidar.
    const withoutEtag = new Set(["/api/tenant-instances/{id}/connection"]);
    const missing: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      const ok = ops.get?.responses?.["200"] as
        | {
            headers?: Record<string, unknown>;
            content?: Record<string, { schema?: { $ref?: string } }>;
          }
        | undefined;
      if (!path.startsWith("/api/") || !ok || withoutEtag.has(path)) continue;
      const schema = Object.values(ok.content ?? {})[0]?.schema?.$ref ?? "";
      if (schema.endsWith("Page")) continue;
      if (!Object.keys(ok.headers ?? {}).includes("ETag")) missing.push(path);
    }
    expect(missing).toEqual([]);
  });

  it("describes 412 as a stale If-Match, not as the 409 conflict", () => {
    const wrong: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const stale = op.responses?.["412"] as { description?: string } | undefined;
        if (stale && !stale.description?.includes("If-Match")) wrong.push(`${method} ${path}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("declares the server's rules on request bodies: at least one field, roles without repeats", async () => {
    const schemas = doc.components?.schemas ?? {};
    const bodySchema = (op: { requestBody?: unknown }) => {
      const body = op.requestBody as
        | { content?: Record<string, { schema?: SchemaNode }> }
        | undefined;
      const schema = body?.content?.["application/json"]?.schema;
      return schema?.$ref ? schemas[schema.$ref.split("/").at(-1) ?? ""] : schema;
    };
    const token = await h.token(["platform_admin"]);
    const wrong: string[] = [];
    let partial = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const isPartial = method === "patch" || (method === "put" && path.endsWith("/features"));
        if (!isPartial || !op.requestBody) continue;
        partial++;
        if (bodySchema(op)?.minProperties !== 1) wrong.push(`${method} ${path}: minProperties`);
        // Y es verdad: {} es un 400 (la validación va antes de buscar el recurso).
        const concrete = path.replace(/\{[^}]+\}/g, () => crypto.randomUUID());
        const res = await h.request(method.toUpperCase(), concrete, { token, json: {} });
        if (res.status !== 400) wrong.push(`${method} ${path}: {} answered ${res.status}`);
      }
    }
    expect(partial).toBeGreaterThanOrEqual(9);
    expect(schemas.CreateAdminClient?.properties?.roles?.uniqueItems).toBe(true);
    const repeated = await h.request("POST", "/api/admin-clients", {
      token,
      json: { name: "Roles repetidos", roles: ["support", "support"] },
    });
    expect(repeated.status).toBe(400);
    expect(wrong).toEqual([]);
  });

  it("declares format date-time on every timestamp a response carries", () => {
    const schemas = doc.components?.schemas ?? {};
    const missing: string[] = [];
    const seen = new Set<SchemaNode>();
    const visit = (node: SchemaNode | undefined, where: string) => {
      if (!node || seen.has(node)) return;
      seen.add(node);
      if (node.$ref) return visit(schemas[node.$ref.split("/").at(-1) ?? ""], node.$ref);
      for (const [name, prop] of Object.entries(node.properties ?? {})) {
        const types = [prop.type ?? []].flat();
        if (/At$/.test(name) && types.includes("string") && prop.format !== "date-time") {
          missing.push(`${where}.${name}`);
        }
        visit(prop, `${where}.${name}`);
      }
      visit(node.items, `${where}[]`);
      for (const branch of [...(node.anyOf ?? []), ...(node.oneOf ?? []), ...(node.allOf ?? [])])
        visit(branch, where);
    };
    let timestamps = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, response] of Object.entries(op.responses ?? {})) {
          const content = (response as { content?: Record<string, { schema?: SchemaNode }> })
            .content;
          for (const media of Object.values(content ?? {})) {
            visit(media.schema, `${method} ${path} ${status}`);
          }
        }
      }
    }
    for (const node of seen) {
      timestamps += Object.values(node.properties ?? {}).filter(
        (p) => p.format === "date-time",
      ).length;
    }
    expect(timestamps).toBeGreaterThan(20);
    expect(missing).toEqual([]);
  });

  it("describes every field of every named schema with an example", () => {
    const missing: string[] = [];
    const visit = (node: SchemaNode, where: string) => {
      for (const [name, prop] of Object.entries(node.properties ?? {})) {
        if (prop.$ref) continue;
        if (!prop.description) missing.push(`${where}.${name} (description)`);
        if (prop.example === undefined && !prop.properties && !prop.items)
          missing.push(`${where}.${name} (example)`);
        visit(prop, `${where}.${name}`);
      }
      if (node.items) visit(node.items, `${where}[]`);
    };
    for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) visit(schema, name);
    expect(missing).toEqual([]);
  });

  it("serves the interactive documentation", async () => {
    const res = await h.app.request("/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(await res.text()).toContain("/openapi.json");
  });
});
