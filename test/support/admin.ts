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
