import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type RunningWsProxy, startWsProxy } from "../infra/wsproxy/wsproxy";
import { createDb } from "./client";
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
    await admin.query(`create database "${name}"`);
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

  it("rejects URLs that are not Postgres", async () => {
    await expect(createDb({ url: "mysql://localhost/x" })).rejects.toThrow(
      /Unsupported database URL/,
    );
  });
});
