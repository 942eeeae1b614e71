import { createServer, type Server } from "node:net";
import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { createDb, dbConfigFromEnv, withEmbeddedDataDir } from "./client";
import { rowsOf } from "./types";

// La fábrica única elige el driver por configuración; aquí, el de Neon (WebSocket Pool) en Node,
// contra un Postgres real a través del proxy wsproxy, como en producción contra Neon.
describe("createDb with the Neon serverless driver", () => {
  let proxy: RunningWsProxy;
  const name = `farutech_test_${inject("runId")}_neon_${process.pid}`;
  let url: string;

  beforeAll(async () => {
    proxy = await startWsProxy();
    const admin = new pg.Client({ connectionString: inject("pgAdminUrl") });
    await admin.connect();
    await admin.query(`create database "${name}" template template0`);
    await admin.end();
    const u = new URL(inject("pgAdminUrl"));
    u.pathname = `/${name}`;
    url = u.toString();
  });

  afterAll(async () => {
    await proxy?.close();
    const admin = new pg.Client({ connectionString: inject("pgAdminUrl") });
    await admin.connect();
    await admin.query(`drop database if exists "${name}" with (force)`);
    await admin.end();
  });

  it("migrates and runs interactive transactions over WebSocket", async () => {
    const handle = await createDb({ url, driver: "neon", neonWsProxy: proxy.url });
    try {
      expect(handle.driver).toBe("neon");
      await handle.migrate();
      await handle.migrate();
      const rolledBack = handle.db.transaction(async (tx) => {
        await tx.execute(sql`insert into products (code, name) values ('NEON_TX', 'x')`);
        throw new Error("rollback on purpose");
      });
      await expect(rolledBack).rejects.toThrow("rollback on purpose");
      const [row] = rowsOf<{ n: number }>(
        await handle.db.execute(
          sql`select count(*)::int as n from products where code = 'NEON_TX'`,
        ),
      );
      expect(row?.n).toBe(0);
    } finally {
      await handle.close();
    }
  });

  it("rejects URLs that are not Postgres, naming the variable", async () => {
    await expect(createDb({ url: "mysql://localhost/x" })).rejects.toThrow(
      /DATABASE_URL: must be a postgres:\/\/ URL, not mysql:/,
    );
    await expect(createDb({ url: "not a url" })).rejects.toThrow(
      /DATABASE_URL: is not a valid URL/,
    );
  });
});

// Una base que acepta la conexión TCP y nunca responde (red partida, proxy colgado): la petición
// falla al vencer el tope de conexión en lugar de colgarse para siempre.
describe("createDb against a database that never answers", () => {
  let server: Server;
  let url: string;

  beforeAll(async () => {
    server = createServer(() => {});
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (!address || typeof address === "string") throw new Error("no port");
    url = `postgres://postgres@127.0.0.1:${address.port}/silent`;
  });
  afterAll(() => {
    server?.close();
  });

  it("fails the query once the connection timeout passes", async () => {
    const handle = await createDb({ url, connectTimeoutMs: 300 });
    try {
      const started = performance.now();
      await expect(handle.db.execute(sql`select 1`)).rejects.toThrow();
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      await handle.close().catch(() => {});
    }
  });
});

// Un reinicio o failover de Postgres corta conexiones prestadas a mitad de transacción.
describe("a connection dropped while it is checked out", () => {
  it("fails only the transaction that held it, never the process, and the pool keeps serving", async () => {
    const { createPostgresTestDatabase } = await import("../test/support/databases");
    const test = await createPostgresTestDatabase();
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    try {
      const pid = await test.handle.db
        .transaction(async (tx) => {
          const [row] = rowsOf<{ pid: number }>(
            await tx.execute(sql`select pg_backend_pid() as pid`),
          );
          // Mientras la transacción espera otra cosa (p. ej. el ack de NATS), cae su conexión.
          const admin = new pg.Client({ connectionString: inject("pgAdminUrl") });
          await admin.connect();
          await admin.query("select pg_terminate_backend($1)", [row?.pid]);
          await admin.end();
          await new Promise((r) => setTimeout(r, 300));
          return row?.pid;
        })
        .catch((err: unknown) => err);
      expect(typeof pid).not.toBe("number");
      expect(uncaught).toEqual([]);
      const [alive] = rowsOf<{ ok: number }>(await test.handle.db.execute(sql`select 1 as ok`));
      expect(alive?.ok).toBe(1);
    } finally {
      process.off("uncaughtException", onUncaught);
      await test.drop();
    }
  });
});

// CLI, funciones y workers abren la misma base embebida que npm start con FARUTECH_DATA_DIR.
describe("the embedded data folder from the environment", () => {
  it("puts PGlite in <FARUTECH_DATA_DIR>/pglite unless PGLITE_DATA_DIR says otherwise", () => {
    expect(withEmbeddedDataDir({ FARUTECH_DATA_DIR: "/srv/farutech" }).PGLITE_DATA_DIR).toBe(
      "/srv/farutech/pglite",
    );
    expect(
      withEmbeddedDataDir({ FARUTECH_DATA_DIR: "/srv/farutech", PGLITE_DATA_DIR: "/db" })
        .PGLITE_DATA_DIR,
    ).toBe("/db");
    expect(withEmbeddedDataDir({}).PGLITE_DATA_DIR).toBeUndefined();
    expect(dbConfigFromEnv({ FARUTECH_DATA_DIR: "/srv/farutech" }).pgliteDataDir).toBe(
      "/srv/farutech/pglite",
    );
  });
});
