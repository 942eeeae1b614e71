import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Role, roles } from "../core/auth/tokens";
import { type AdminHarness, startAdminHarness } from "../test/support/admin";
import type { JsonResponse } from "../test/support/http";
import { CATALOG_READ, CATALOG_WRITE, TENANT_READ, TENANT_WRITE } from "./middleware/roles";

interface Parameter {
  name: string;
  in: string;
  schema?: { format?: string; example?: unknown };
}
interface Operation {
  operationId?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  "x-required-roles"?: string[];
  description?: string;
  parameters?: (Parameter | { $ref: string })[];
  requestBody?: unknown;
}
interface OpenApiDoc {
  paths: Record<string, Record<string, Operation>>;
}

/** Sin token a propósito: sondas, el documento y su visor. */
const PUBLIC_PATHS = new Set(["/healthz", "/readyz", "/openapi.json", "/docs"]);

// La política de roles.ts ("platform_admin todo; catalog_manager catálogo y planes; support solo
// lee"), por dominio. El dominio sale del tag de la operación en el documento: un tag nuevo hace
// fallar la prueba hasta que se decida de qué dominio es.
type Domain = "catalog" | "tenant";
const DOMAIN_OF_TAG: Record<string, Domain> = {
  products: "catalog",
  modules: "catalog",
  features: "catalog",
  plans: "catalog",
  customers: "tenant",
  tenants: "tenant",
  subscriptions: "tenant",
  provisioning: "tenant",
  access: "tenant",
  audit: "tenant",
  dlq: "tenant",
  billing: "tenant",
  webhooks: "tenant",
};
const ROLE_SETS: Record<Domain, { read: Role[]; write: Role[] }> = {
  catalog: { read: CATALOG_READ, write: CATALOG_WRITE },
  tenant: { read: TENANT_READ, write: TENANT_WRITE },
};
// Lecturas que devuelven un secreto: las guarda el rol de escritura (tenant-instances/connection.ts).
const SECRET_READS = new Set(["getTenantInstanceConnection"]);
const READ_METHODS = new Set(["get", "head"]);

interface Endpoint {
  method: string;
  path: string;
  op: Operation;
  label: string;
}

/**
 * Quién puede llamar a la operación según los guards: readGuard (lecturas) con el conjunto *_READ
 * de su dominio, writeGuard (todo lo que escribe) con el *_WRITE. Un POST con readGuard(TENANT_READ)
 * dejaría a support escribir; aquí espera TENANT_WRITE y la prueba falla.
 */
function allowedRoles(endpoint: Endpoint): Role[] {
  const domains = new Set((endpoint.op.tags ?? []).map((tag) => DOMAIN_OF_TAG[tag]));
  const [domain] = domains;
  if (domains.size !== 1 || !domain) {
    throw new Error(`${endpoint.label}: tags ${endpoint.op.tags} map to no single domain`);
  }
  const write =
    !READ_METHODS.has(endpoint.method) || SECRET_READS.has(endpoint.op.operationId ?? "");
  return write ? ROLE_SETS[domain].write : ROLE_SETS[domain].read;
}

function endpointsOf(doc: OpenApiDoc): Endpoint[] {
  return Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => ({
      method,
      path,
      op,
      label: `${method.toUpperCase()} ${path} (${op.operationId})`,
    })),
  );
}

/** Los roles que el documento dice que la operación exige (security, extensión y descripción). */
function documentedRoles(endpoint: Endpoint): string[] {
  const roles = endpoint.op["x-required-roles"] ?? [];
  expect(endpoint.op.security, endpoint.label).toEqual([{ Bearer: roles }]);
  expect(endpoint.op.description ?? "", endpoint.label).toContain(
    `Requiere uno de los roles: ${roles.join(", ")}.`,
  );
  return roles;
}

/** Ruta concreta: un uuid nuevo donde se pide uuid (no existe: 404 tras el guard), o el ejemplo. */
function concretePath(endpoint: Endpoint): string {
  const params = (endpoint.op.parameters ?? []).filter((p): p is Parameter => "in" in p);
  return endpoint.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const schema = params.find((p) => p.in === "path" && p.name === name)?.schema;
    const value = schema?.format === "uuid" ? crypto.randomUUID() : String(schema?.example ?? "x");
    return encodeURIComponent(value);
  });
}

// Cada operación del documento, con y sin token, con cada rol que existe: 401 sin token, 403 donde
// el guard lo prohíbe y ni 401 ni 403 donde lo permite (el resultado después da igual: 404, 400…).
describe("admin API authorization matrix", () => {
  let h: AdminHarness;
  let endpoints: Endpoint[];

  beforeAll(async () => {
    h = await startAdminHarness("postgres");
    const res = await h.request<OpenApiDoc>("GET", "/openapi.json");
    expect(res.status).toBe(200);
    endpoints = endpointsOf(res.body).filter((e) => !PUBLIC_PATHS.has(e.path));
  });
  afterAll(async () => h?.stop());

  async function call(endpoint: Endpoint, token?: string): Promise<JsonResponse> {
    const write = !READ_METHODS.has(endpoint.method);
    return h.request(endpoint.method.toUpperCase(), concretePath(endpoint), {
      ...(token ? { token } : {}),
      // Cuerpo vacío y clave nueva: el guard decide antes de validar o de mirar la idempotencia.
      ...(endpoint.op.requestBody ? { json: {} } : {}),
      ...(write ? { headers: { "idempotency-key": `authz-${crypto.randomUUID()}` } } : {}),
    });
  }

  it("covers every route the app serves, each documenting the roles of its policy", () => {
    expect(endpoints.length).toBeGreaterThan(20);
    const documented = new Set(endpoints.map((e) => `${e.method} ${e.path}`));
    // Una ruta fuera del documento no pasaría por esta matriz: se exige que esté en él.
    const served = h.app.routes
      .filter((r) => r.method !== "ALL" && !PUBLIC_PATHS.has(r.path))
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}")}`);
    expect(served.filter((route) => !documented.has(route))).toEqual([]);
    for (const endpoint of endpoints) {
      expect(allowedRoles(endpoint).length, endpoint.label).toBeGreaterThan(0);
      // Lo que el documento promete es la política de roles.ts (en el mismo orden).
      expect(documentedRoles(endpoint), endpoint.label).toEqual(allowedRoles(endpoint));
    }
    // Una excepción que ya no nombra ninguna operación es una política muerta.
    const ids = new Set(endpoints.map((e) => e.op.operationId));
    expect([...SECRET_READS].filter((id) => !ids.has(id))).toEqual([]);
  });

  it("answers 401 problem+json to every operation without a token", async () => {
    const wrong: string[] = [];
    for (const endpoint of endpoints) {
      const res = await call(endpoint);
      const body = res.body as { code?: unknown } | null;
      const ok =
        res.status === 401 &&
        res.headers.get("content-type")?.includes("application/problem+json") &&
        body?.code === "unauthorized" &&
        res.headers.get("www-authenticate") === 'Bearer realm="farutech"';
      if (!ok) wrong.push(`${endpoint.label}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    expect(wrong).toEqual([]);
  });

  // Cada rol que existe (un rol nuevo entra solo) y un token sin roles.
  it.each([
    ...roles.map((role) => ({ name: role, tokenRoles: [role] as string[] })),
    { name: "no role", tokenRoles: [] as string[] },
  ])("with $name answers 403 exactly where the document says so", async ({ tokenRoles }) => {
    const token = await h.token(tokenRoles);
    const wrong: string[] = [];
    for (const endpoint of endpoints) {
      // Los roles del documento frente a lo que el guard deja pasar de verdad.
      const allowed = documentedRoles(endpoint).some((role) => tokenRoles.includes(role));
      const res = await call(endpoint, token);
      const body = res.body as { code?: unknown } | null;
      if (allowed) {
        if (res.status === 401 || res.status === 403) {
          wrong.push(`${endpoint.label}: allowed but got ${res.status}`);
        }
      } else if (
        res.status !== 403 ||
        !res.headers.get("content-type")?.includes("application/problem+json") ||
        body?.code !== "forbidden"
      ) {
        wrong.push(`${endpoint.label}: forbidden but got ${res.status}`);
      }
    }
    expect(wrong).toEqual([]);
  });
});
