import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  createSecretBox,
  generateEncryptionKey,
  type SecretBox,
  secretContext,
} from "../core/secret-box";
import { features, planFeatures, tenantInstances } from "../db/schema";
import { type AdminHarness, startSeededAdmin } from "../test/support/admin";
import { demoProvisionBody } from "../test/support/demo";
import type { JsonResponse } from "../test/support/http";

interface Header {
  schema?: { type?: string; format?: string };
  description?: string;
}
interface Response {
  headers?: Record<string, Header>;
  content?: Record<string, { schema?: { $ref?: string } }>;
}
interface OpenApiDoc {
  paths: Record<string, Record<string, { responses?: Record<string, Response> }>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
}

// Cabeceras que el documento debe declarar si la respuesta real las trae.
const TRACKED = ["location", "etag", "cache-control", "idempotent-replayed", "www-authenticate"];
// Y las que, declaradas, deben llegar siempre (idempotent-replayed y el reto dependen del caso).
const ALWAYS_SENT = ["location", "etag", "cache-control"];

const unique = () => `HDR_${crypto.randomUUID().slice(0, 8).toUpperCase()}`;

// La review comparó respuestas reales con el documento: aquí cada respuesta se contrasta con la
// operación y el estado que el documento declara para ella.
describe("OpenAPI document against real responses", () => {
  let h: AdminHarness;
  let admin: string;
  let box: SecretBox;
  let doc: OpenApiDoc;
  let ajv: Ajv2020;
  const mismatches: string[] = [];

  beforeAll(async () => {
    box = await createSecretBox(JSON.stringify([generateEncryptionKey("hdr-test")]));
    ({ h, admin } = await startSeededAdmin("pglite", undefined, { secretBox: box }));
    const res = await h.request<OpenApiDoc>("GET", "/openapi.json");
    expect(res.status).toBe(200);
    doc = res.body;
    // Con formatos: un date-time declarado que no lo fuera haría fallar la respuesta real.
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema({ ...doc, $id: "openapi.json" });
  });
  afterAll(async () => h?.stop());
  beforeEach(() => {
    mismatches.length = 0;
  });

  /** Lo que la respuesta real trae y el documento no dice (o dice y no trae). */
  function compare(method: string, path: string, res: JsonResponse): string[] {
    const label = `${method.toUpperCase()} ${path} ${res.status}`;
    const response = doc.paths[path]?.[method]?.responses?.[String(res.status)];
    if (!response) return [`${label}: status not documented`];
    const declared = new Set(Object.keys(response.headers ?? {}).map((k) => k.toLowerCase()));
    const out: string[] = [];
    for (const name of TRACKED) {
      if (res.headers.has(name) && !declared.has(name)) out.push(`${label}: ${name} undeclared`);
    }
    for (const name of ALWAYS_SENT) {
      if (declared.has(name) && !res.headers.has(name)) out.push(`${label}: ${name} not sent`);
    }
    // El cuerpo cumple el esquema que el documento declara para ese estado y tipo.
    const media = res.headers.get("content-type")?.split(";")[0] ?? "";
    if (response.content?.[media]) {
      const pointer = `openapi.json#/paths/${path.replaceAll("/", "~1")}/${method}/responses/${res.status}/content/${media.replace("/", "~1")}/schema`;
      const validate = ajv.getSchema(pointer);
      if (!validate) out.push(`${label}: no schema at ${pointer}`);
      else if (!validate(res.body)) out.push(`${label}: body ${JSON.stringify(validate.errors)}`);
    } else if (res.body !== null && res.body !== "") {
      out.push(`${label}: ${media} body undeclared`);
    }
    // Un cuerpo problem+json no trae campos que el esquema Problem no nombre.
    if (res.headers.get("content-type")?.includes("problem+json")) {
      const known = doc.components.schemas.Problem?.properties ?? {};
      const extra = Object.keys(res.body as object).filter((key) => !(key in known));
      if (extra.length > 0) out.push(`${label}: problem fields ${extra} undeclared`);
    }
    return out;
  }

  async function check<T = Record<string, unknown>>(
    method: string,
    path: string,
    concrete: string,
    init: Parameters<AdminHarness["request"]>[2] = {},
  ): Promise<JsonResponse<T>> {
    const res = await h.request<T>(method.toUpperCase(), concrete, { token: admin, ...init });
    mismatches.push(...compare(method, path, res));
    return res;
  }

  it("declares the Location, ETag and Cache-Control of catalog creates and edits", async () => {
    const product = await check<{ id: string }>("post", "/api/products", "/api/products", {
      json: { code: unique(), name: "Cabeceras" },
    });
    expect(product.status).toBe(201);
    const p = product.body.id;
    await check("post", "/api/products/{id}/limits", `/api/products/${p}/limits`, {
      json: { name: "terminals" },
    });
    await check("patch", "/api/products/{id}", `/api/products/${p}`, { json: { name: "Otro" } });
    const mod = await check<{ id: string }>(
      "post",
      "/api/products/{id}/modules",
      `/api/products/${p}/modules`,
      { json: { code: unique(), name: "Módulo" } },
    );
    expect(mod.status).toBe(201);
    await check("patch", "/api/modules/{id}", `/api/modules/${mod.body.id}`, {
      json: { name: "Otro" },
    });
    const feature = await check<{ id: string; code: string }>(
      "post",
      "/api/modules/{id}/features",
      `/api/modules/${mod.body.id}/features`,
      { json: { code: unique(), name: "Feature" } },
    );
    expect(feature.status).toBe(201);
    await check("patch", "/api/features/{id}", `/api/features/${feature.body.id}`, {
      json: { name: "Otra" },
    });
    const plan = await check<{ id: string }>("post", "/api/plans", "/api/plans", {
      json: {
        productId: p,
        code: unique(),
        name: "Plan",
        tier: "standard",
        price: "10.00",
        maxUsers: 5,
        includedFeatures: [feature.body.code],
      },
    });
    expect(plan.status).toBe(201);
    await check("patch", "/api/plans/{id}", `/api/plans/${plan.body.id}`, {
      json: { name: "Otro" },
    });
    expect(mismatches).toEqual([]);
  });

  it("declares the headers of client creation, secrets, async tasks and errors", async () => {
    await check("post", "/api/admin-clients", "/api/admin-clients", {
      json: { name: "Cabeceras", roles: ["support"] },
    });
    const [inst] = await h.db.handle.db.select().from(tenantInstances).limit(1);
    if (!inst) throw new Error("no demo instance");
    await check(
      "post",
      "/api/tenant-instances/{id}/clients",
      `/api/tenant-instances/${inst.id}/clients`,
      {
        json: { name: "App" },
      },
    );
    const sealed = await box.encrypt(
      "postgres://t:pw@db.test/t",
      secretContext.connectionString(inst.id),
    );
    await h.db.handle.db
      .update(tenantInstances)
      .set({
        databaseTier: "enterprise",
        connectionStringEncrypted: sealed,
        encryptionKeyId: box.activeKeyId,
      })
      .where(eq(tenantInstances.id, inst.id));
    const conn = await check(
      "get",
      "/api/tenant-instances/{id}/connection",
      `/api/tenant-instances/${inst.id}/connection`,
    );
    expect(conn.status).toBe(200);
    const body = await demoProvisionBody(h.db.handle.db, `hdr-${crypto.randomUUID().slice(0, 8)}`);
    const task = await check("post", "/api/provisioning/provision", "/api/provisioning/provision", {
      json: body,
    });
    expect(task.status).toBe(202);
    await check("post", "/api/billing/cycles", "/api/billing/cycles", {
      json: { period: "2025-06" },
    });
    // 401 sin token y 403 con un token sin el rol: ambos llevan el reto Bearer.
    await check("get", "/api/products", "/api/products", { token: "" });
    await check("post", "/api/products", "/api/products", {
      token: await h.token([]),
      json: { code: unique(), name: "x" },
    });
    // Un 400 o un 415 con Idempotency-Key se guarda y su repetición lo dice.
    for (const init of [
      { json: { code: "" } },
      { body: "code=x", headers: { "content-type": "text/plain" } },
    ]) {
      const key = { "idempotency-key": `hdr-${crypto.randomUUID()}` };
      const first = { ...init, headers: { ...init.headers, ...key } };
      await check("post", "/api/products", "/api/products", first);
      const again = await check("post", "/api/products", "/api/products", first);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
    }
    expect(mismatches).toEqual([]);
  });

  it("declares the extra fields that problem bodies carry", async () => {
    // Una feature de la demo incluida en planes: el 409 nombra planes, overrides y tareas.
    const [used] = await h.db.handle.db
      .select({ id: features.id, planId: planFeatures.planId })
      .from(features)
      .innerJoin(
        planFeatures,
        and(
          eq(planFeatures.productId, features.productId),
          eq(planFeatures.featureCode, features.code),
        ),
      )
      .limit(1);
    if (!used) throw new Error("no demo data");
    const plan = { id: used.planId };
    const conflict = await check("delete", "/api/features/{id}", `/api/features/${used.id}`);
    expect(conflict.status).toBe(409);
    const unknown = await check("patch", "/api/plans/{id}", `/api/plans/${plan.id}`, {
      json: { includedFeatures: ["NO_SUCH_FEATURE"] },
    });
    expect(unknown.status).toBeGreaterThanOrEqual(400);
    expect(mismatches).toEqual([]);
  });

  it("declares Location as a uri-reference wherever it is declared", () => {
    const wrong: string[] = [];
    let declared = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, response] of Object.entries(op.responses ?? {})) {
          const location = response.headers?.Location;
          if (!location) continue;
          declared++;
          if (location.schema?.format !== "uri-reference" || !location.description) {
            wrong.push(`${method} ${path} ${status}`);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
    // Cada alta (201) y cada operación asíncrona (202) salvo las que no crean nada que consultar.
    expect(declared).toBeGreaterThanOrEqual(13);
  });
});
