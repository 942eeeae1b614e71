import { generateSigningKey, publicJwksOf } from "../../core/auth/keys";
import { createTokenSigner, createTokenVerifier, type TokenSigner } from "../../core/auth/tokens";
import { type BusProvider, fixedBusProvider } from "../../core/bus-provider";
import type { SecretBox } from "../../core/secret-box";
import { seedDemo } from "../../db/seed";
import type { QueryObserver } from "../../db/types";
import { createAdminApp } from "../../functions/app";
import { createTestDatabase, type DatabaseKind, type TestDatabase } from "./databases";
import type { JsonResponse } from "./http";
import { captureLogs } from "./logs";

const SETTINGS = {
  issuer: "http://edge.test",
  audience: "farutech-orchestrator",
  accessTokenTtlSeconds: 300,
};

/**
 * Bus sin broker: las pruebas de CRUD verifican los eventos en el outbox (lo que el relay
 * publicaría). Las de publicación real usan un nats-server (test/e2e).
 */
export const offlineBus: BusProvider = fixedBusProvider(undefined);

export interface AdminHarness {
  db: TestDatabase;
  app: ReturnType<typeof createAdminApp>;
  /** Cada línea de log de la API (nivel info); una con claves repetidas hace fallar la prueba. */
  logs: Record<string, unknown>[];
  token(roles: string[], sub?: string): Promise<string>;
  request<T = Record<string, unknown>>(
    method: string,
    path: string,
    init?: { token?: string; json?: unknown; body?: string; headers?: Record<string, string> },
  ): Promise<JsonResponse<T>>;
  stop(): Promise<void>;
}

interface OpenApiPaths {
  paths: Record<string, Record<string, { responses?: Record<string, unknown> }>>;
}

/** La operación del documento que atiende `method pathname`: la de más segmentos fijos. */
export function operationFor(
  doc: OpenApiPaths,
  method: string,
  pathname: string,
): { template: string; responses: Record<string, unknown> } | undefined {
  let best: { template: string; responses: Record<string, unknown>; fixed: number } | undefined;
  for (const [template, item] of Object.entries(doc.paths)) {
    const op = item[method.toLowerCase()];
    if (!op) continue;
    const segments = template.split("/");
    const actual = pathname.split("/");
    if (segments.length !== actual.length) continue;
    const fits = segments.every((seg, i) => /^\{.+\}$/.test(seg) || seg === actual[i]);
    if (!fits) continue;
    const fixed = segments.filter((seg) => !seg.startsWith("{")).length;
    if (!best || fixed > best.fixed) best = { template, responses: op.responses ?? {}, fixed };
  }
  return best;
}

/** La API admin en proceso (app.request) sobre una base real, con tokens firmados de verdad. */
export async function startAdminHarness(
  kind: DatabaseKind,
  onQuery?: QueryObserver,
  options: { secretBox?: SecretBox } = {},
): Promise<AdminHarness> {
  const db = await createTestDatabase(kind, onQuery);
  const key = await generateSigningKey("admin-test");
  const signer: TokenSigner = await createTokenSigner([key], SETTINGS);
  const { logger, lines: logs } = captureLogs("admin-test");
  const app = createAdminApp({
    db: db.handle.db,
    bus: offlineBus,
    verifier: createTokenVerifier({ jwks: publicJwksOf([key]) }, SETTINGS),
    logger,
    baseDomain: "farutech.test",
    ...(options.secretBox ? { secretBox: options.secretBox } : {}),
  });
  // Cada respuesta de cualquier prueba se compara con /openapi.json: un estado que la operación
  // no declara hace fallar la prueba (el documento no puede prometer menos de lo que pasa).
  let doc: OpenApiPaths | undefined;
  const undeclared = async (method: string, path: string, status: number) => {
    if (method === "HEAD" || method === "OPTIONS") return undefined;
    doc ??= (await (await app.request("/openapi.json")).json()) as OpenApiPaths;
    const op = operationFor(doc, method, new URL(path, "http://admin.test").pathname);
    if (!op || op.responses[String(status)]) return undefined;
    return `${method} ${op.template} answered ${status}, which /openapi.json does not declare for it`;
  };
  return {
    db,
    app,
    logs,
    async token(roles, sub = `tester-${roles.join("-") || "none"}`) {
      return (await signer.sign({ sub, tenant_id: null, instance_ids: [], roles })).token;
    },
    async request(method, path, init = {}) {
      const headers: Record<string, string> = { ...(init.headers ?? {}) };
      if (init.token) headers.authorization = `Bearer ${init.token}`;
      let body = init.body;
      if (init.json !== undefined) {
        headers["content-type"] ??= "application/json";
        body = JSON.stringify(init.json);
      }
      const res = await app.request(path, { method, headers, body });
      const mismatch = await undeclared(method.toUpperCase(), path, res.status);
      if (mismatch) throw new Error(mismatch);
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // cuerpo no JSON
      }
      return { status: res.status, headers: res.headers, body: parsed as never };
    },
    stop: () => db.drop(),
  };
}

/** La API admin con la demo sembrada y un token `platform_admin`: el arranque de casi todas las pruebas. */
export async function startSeededAdmin(
  ...args: Parameters<typeof startAdminHarness>
): Promise<{ h: AdminHarness; admin: string }> {
  const h = await startAdminHarness(...args);
  await seedDemo(h.db.handle.db);
  return { h, admin: await h.token(["platform_admin"]) };
}
