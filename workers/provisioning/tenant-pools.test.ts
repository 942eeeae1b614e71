import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomToken } from "../../core/ids";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { waitFor } from "../../test/support/stack";
import { createPostgresDedicated, dedicatedName } from "./dedicated-databases";

// Pools por base de tenant (Enterprise) contra un Postgres real: tope, desalojo LRU y reutilización.
describe("tenant database pools", () => {
  let control: TestDatabase;
  let admin: pg.Client;
  let dedicated: ReturnType<typeof createPostgresDedicated>;
  const suffix = `${process.pid}${Date.now().toString(36)}`;
  const codes = ["a", "b", "c"].map((x) => `pooltest-${suffix}-${x}`);
  const names = codes.map(dedicatedName);
  const urls: string[] = [];

  // Conexiones abiertas por base, vistas desde el servidor.
  const backends = async () => {
    const { rows } = await admin.query<{ datname: string; n: number }>(
      "select datname, count(*)::int as n from pg_stat_activity where datname = any($1) group by 1",
      [names],
    );
    return Object.fromEntries(names.map((n) => [n, rows.find((r) => r.datname === n)?.n ?? 0]));
  };
  const until = (probe: (b: Record<string, number>) => boolean) =>
    waitFor(async () => {
      const b = await backends();
      return probe(b) ? b : undefined;
    });

  beforeAll(async () => {
    control = await createPostgresTestDatabase();
    admin = new pg.Client({ connectionString: control.url });
    await admin.connect();
    dedicated = createPostgresDedicated(control.url ?? "", { maxPools: 2, maxConnections: 2 });
    for (const code of codes) {
      const password = randomToken(24);
      await dedicated.create(code, password);
      urls.push(dedicated.connectionString(code, password));
    }
  });
  afterAll(async () => {
    for (const code of codes) await dedicated?.drop(code).catch(() => {});
    await dedicated?.close();
    await admin?.end();
    await control?.drop();
  });

  it("reuses one pool per tenant database, evicts the least recently used and bounds connections", async () => {
    const [a, b, c] = names;
    const [urlA, urlB, urlC] = urls;
    if (!a || !b || !c || !urlA || !urlB || !urlC) throw new Error("fixture");
    const { pools } = dedicated;

    await dedicated.applyBaseline(urlA, "FARUTECH_ERP");
    await dedicated.applyBaseline(urlB, "FARUTECH_ERP");
    await dedicated.applyBaseline(urlA, "FARUTECH_ERP");
    expect(pools.created).toBe(2);
    expect(pools.size).toBe(2);
    expect(pools.acquire(urlA)).toBe(pools.acquire(urlA));
    expect(await backends()).toEqual({ [a]: 1, [b]: 1, [c]: 0 });

    // Tercera base con tope 2: se cierra la de b (la menos usada recientemente), no la de a.
    await dedicated.applyBaseline(urlC, "FARUTECH_ERP");
    expect(pools.size).toBe(2);
    expect(pools.created).toBe(3);
    expect(await until((x) => x[b] === 0)).toEqual({ [a]: 1, [b]: 0, [c]: 1 });

    // Como mucho 2 conexiones por base: la tercera petición espera a que se libere una.
    const poolA = pools.acquire(urlA);
    const held = [await poolA.connect(), await poolA.connect()];
    const third = poolA.connect();
    expect(poolA.waitingCount).toBe(1);
    expect((await backends())[a]).toBe(2);
    held[0]?.release();
    const got = await third;
    expect((await backends())[a]).toBe(2);
    got.release();
    held[1]?.release();

    // Contraseña nueva (rotación): el pool viejo se cierra y se rehace.
    const password = randomToken(24);
    await dedicated.create(codes[0] ?? "", password);
    const rotated = dedicated.connectionString(codes[0] ?? "", password);
    await dedicated.applyBaseline(rotated, "FARUTECH_ERP");
    expect(pools.created).toBe(4);
    expect(pools.size).toBe(2);
    const meta = await pools
      .acquire(rotated)
      .query("select value from farutech_tenant_metadata where key = 'product'");
    expect(meta.rows).toEqual([{ value: "FARUTECH_ERP" }]);

    // Borrar la base cierra antes su pool; repetir el borrado no falla.
    await dedicated.drop(codes[0] ?? "");
    await dedicated.drop(codes[0] ?? "");
    expect(pools.size).toBe(1);
    const left = await admin.query(
      "select (select count(*)::int from pg_database where datname = $1) as dbs, (select count(*)::int from pg_roles where rolname = $1) as roles",
      [a],
    );
    expect(left.rows).toEqual([{ dbs: 0, roles: 0 }]);

    await dedicated.close();
    expect(pools.size).toBe(0);
    expect(await until((x) => x[c] === 0)).toEqual({ [a]: 0, [b]: 0, [c]: 0 });
  });
});
