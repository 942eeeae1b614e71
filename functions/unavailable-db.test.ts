import { createServer, type Server, type Socket } from "node:net";
import { Writable } from "node:stream";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, publicJwksOf } from "../core/auth/keys";
import { createTokenSigner, createTokenVerifier } from "../core/auth/tokens";
import { createLogger } from "../core/logger";
import { createDb } from "../db/client";
import type { DbHandle } from "../db/types";
import { offlineBus } from "../test/support/admin";
import { createTestDatabase, type TestDatabase } from "../test/support/databases";
import { createAdminApp } from "./app";

const SETTINGS = {
  issuer: "http://edge.test",
  audience: "farutech-orchestrator",
  accessTokenTtlSeconds: 300,
};

/** La API admin sobre una base dada, con un logger que guarda cada línea. */
async function adminOver(db: DbHandle["db"], lines: string[]) {
  const key = await generateSigningKey("unavailable-test");
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const app = createAdminApp({
    db,
    bus: offlineBus,
    verifier: createTokenVerifier({ jwks: publicJwksOf([key]) }, SETTINGS),
    logger: createLogger({ service: "unavailable-test", destination: sink }),
    baseDomain: "farutech.test",
  });
  const signer = await createTokenSigner([key], SETTINGS);
  const { token } = await signer.sign({
    sub: "tester",
    tenant_id: null,
    instance_ids: [],
    roles: ["platform_admin"],
  });
  return { app, token };
}

describe("admin API when the database is away", () => {
  let silent: Server;
  const sockets: Socket[] = [];
  let url: string;

  beforeAll(async () => {
    // Acepta conexiones y no contesta nunca: como una base colgada tras un balanceador.
    silent = createServer((socket) => sockets.push(socket));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const address = silent.address();
    if (!address || typeof address === "string") throw new Error("no port");
    url = `postgres://postgres@127.0.0.1:${address.port}/nothing`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((r) => silent.close(r));
  });

  it("answers 503 problem+json, not 500, when it cannot reach the database", async () => {
    const handle = await createDb({ url, connectTimeoutMs: 300 });
    try {
      const lines: string[] = [];
      const { app, token } = await adminOver(handle.db, lines);
      const res = await app.request("/api/customers", {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(503);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(await res.json()).toMatchObject({ status: 503, code: "unavailable" });
    } finally {
      await handle.close().catch(() => {});
    }
  });

  describe("with a real database", () => {
    let db: TestDatabase;
    beforeAll(async () => {
      db = await createTestDatabase("postgres");
    });
    afterAll(async () => db?.drop());

    it("answers 503 with Retry-After, not a request that hangs, when a statement waits past the statement timeout", async () => {
      const handle = await createDb({ url: db.url, statementTimeoutMs: 300 });
      const holder = new pg.Client({ connectionString: db.url });
      await holder.connect();
      try {
        const lines: string[] = [];
        const { app, token } = await adminOver(handle.db, lines);
        const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
        const created = await app.request("/api/customers", {
          method: "POST",
          headers,
          body: JSON.stringify({
            legalName: "Clínica Bloqueada",
            taxId: "900777",
            billingEmail: "x@bloqueada.example",
            country: "CO",
          }),
        });
        expect(created.status).toBe(201);
        const { id } = (await created.json()) as { id: string };
        // Otra sesión retiene la fila (una migración, una transacción olvidada).
        await holder.query("begin");
        await holder.query("select 1 from customers where id = $1 for update", [id]);
        const release = setTimeout(() => holder.query("rollback").catch(() => {}), 5_000);
        const started = Date.now();
        const res = await app.request(`/api/customers/${id}`, {
          method: "PATCH",
          headers,
          body: JSON.stringify({ legalName: "Clínica Liberada" }),
        });
        clearTimeout(release);
        expect(Date.now() - started).toBeLessThan(4_000);
        expect(res.status).toBe(503);
        expect(res.headers.get("content-type")).toContain("application/problem+json");
        expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
        expect(await res.json()).toMatchObject({ status: 503, code: "unavailable" });
      } finally {
        await holder.end().catch(() => {});
        await handle.close().catch(() => {});
      }
    });

    it("logs a failed query without its SQL parameters", async () => {
      const lines: string[] = [];
      const { app, token } = await adminOver(db.handle.db, lines);
      // Rompe la tabla para que la consulta falle con un error que no es del cliente.
      await db.handle.db.execute("alter table customers rename column legal_name to legal_name_x");
      const secret = `personal-${crypto.randomUUID()}`;
      const res = await app.request("/api/customers", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({
          legalName: secret,
          taxId: "900123",
          billingEmail: "x@clinica.example",
          country: "CO",
        }),
      });
      expect(res.status).toBe(500);
      const failed = lines.find((l) => l.includes("request failed"));
      expect(failed).toBeDefined();
      expect(failed).toContain("legal_name");
      expect(lines.join("\n")).not.toContain(secret);
    });
  });
});
