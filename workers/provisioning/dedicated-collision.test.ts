import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../core/ids";
import { createPostgresTestDatabase, type TestDatabase } from "../../test/support/databases";
import { PermanentError } from "../runtime/errors";
import { createPostgresDedicated, dedicatedName } from "./dedicated-databases";

// Dos planos de control en el mismo servidor (staging restaurado de un volcado de producción): los
// ids de instancia coinciden y con ellos los nombres de base y rol Enterprise. Ninguno toca los del
// otro: ni cambia su contraseña, ni borra su base, ni le quita el login.
describe("Enterprise databases of two control planes on one server", () => {
  let first: TestDatabase;
  let second: TestDatabase;
  beforeAll(async () => {
    first = await createPostgresTestDatabase();
    second = await createPostgresTestDatabase();
  });
  afterAll(async () => {
    await first?.drop();
    await second?.drop();
  });

  const server = async <T>(work: (admin: pg.Client) => Promise<T>): Promise<T> => {
    const admin = new pg.Client({ connectionString: first.url });
    await admin.connect();
    try {
      return await work(admin);
    } finally {
      await admin.end();
    }
  };

  it("never takes over, drops or locks out the other's tenant database", async () => {
    const owner = createPostgresDedicated(first.url ?? "");
    const other = createPostgresDedicated(second.url ?? "");
    const id = newId();
    const name = dedicatedName(id);
    try {
      await owner.create(id, "first-control-plane-password");
      await owner.applyBaseline(owner.connectionString(id, "first-control-plane-password"), "VET");
      // Un reintento del dueño sigue valiendo (mismo rol, misma marca).
      await owner.create(id, "first-control-plane-password");

      await expect(other.create(id, "second-control-plane-password")).rejects.toBeInstanceOf(
        PermanentError,
      );
      await expect(other.drop(id)).rejects.toBeInstanceOf(PermanentError);
      expect(await other.disableLogin(id)).toBe(0);
      const state = await server(async (admin) => {
        const { rows } = await admin.query<{ login: boolean; db: number }>(
          `select (select rolcanlogin from pg_roles where rolname = $1) as login,
                  (select count(*)::int from pg_database where datname = $1) as db`,
          [name],
        );
        return rows[0];
      });
      expect(state).toEqual({ login: true, db: 1 });
    } finally {
      await owner.drop(id);
      await owner.close();
      await other.close();
    }
    const gone = await server(
      async (admin) =>
        (await admin.query("select 1 from pg_roles where rolname = $1", [name])).rowCount,
    );
    expect(gone).toBe(0);
  });
});
