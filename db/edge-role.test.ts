import { spawn } from "node:child_process";
import { sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { pgErrorCode } from "../core/http/db-errors";
import { randomToken } from "../core/ids";
import { createPostgresTestDatabase, type TestDatabase } from "../test/support/databases";
import { scramLogin, storedRoleVerifier } from "../test/support/scram";
import { revokePublicAccess } from "../workers/provisioning/database-acl";
import { createDb } from "./client";
import { EdgeLoginError, ensureEdgeLogin } from "./edge-role";
import { seedDemo } from "./seed";

// El usuario del edge (rol farutech_edge) contra Postgres real: lo que puede leer y escribir el
// edge, expuesto a Internet, y nada más. Que le alcance para todo lo que hace lo prueban las
// pruebas del edge, que entran con él (test/support/databases.ts, edgeUrl).
let db: TestDatabase;
let edge: pg.Client;
const runId = inject("runId");
const adminUrl = inject("pgAdminUrl");
const testRole = (suffix: string) => `farutech_test_${suffix}_${runId}`;

async function sqlError(query: string): Promise<string | undefined> {
  try {
    await edge.query(query);
    return undefined;
  } catch (err) {
    return pgErrorCode(err);
  }
}

/** Cliente con el usuario y la contraseña dados contra la base de la prueba (auth por SCRAM no: trust). */
function clientAs(user: string, password: string): pg.Client {
  const url = new URL(db.url ?? "");
  url.username = user;
  url.password = password;
  return new pg.Client({ connectionString: url.toString() });
}

beforeAll(async () => {
  db = await createPostgresTestDatabase();
  await seedDemo(db.handle.db);
  edge = new pg.Client({ connectionString: db.edgeUrl });
  await edge.connect();
});

afterAll(async () => {
  await edge?.end();
  await db?.drop();
});

describe("the edge database role", () => {
  it("reads what resolves entitlements and its own OAuth tables", async () => {
    for (const query of [
      "select id, status, product_id from tenant_instances",
      "select * from products",
      "select * from features",
      "select * from plans",
      "select * from plan_features",
      "select * from plan_limits",
      "select name from product_limits",
      "select * from subscriptions",
      "select * from subscription_feature_overrides",
      "select * from api_clients",
      "select * from refresh_tokens",
      "select * from client_auth_failures",
    ]) {
      expect(await sqlError(query), query).toBeUndefined();
    }
    const { rows } = await edge.query("select count(*)::int as n from tenant_instances");
    expect(rows[0].n).toBeGreaterThan(0);
  });

  it("cannot read personal data, secrets or history, nor change the control plane", async () => {
    for (const query of [
      "select * from customers",
      "select legal_name from customers",
      "select connection_string_encrypted from tenant_instances",
      "select customer_id from tenant_instances",
      "select * from tenant_instances",
      "select * from audit_log",
      "select * from webhook_endpoints",
      "select * from idempotency_keys",
      "select * from dlq_entries",
      "select * from outbox_events",
      "select * from provisioning_tasks",
      "select * from invoices",
      "update tenant_instances set status = 'active'",
      "update subscriptions set status = 'active'",
      "insert into subscription_feature_overrides default values",
      "update api_clients set revoked_at = null",
      "insert into api_clients default values",
      "delete from refresh_tokens",
      "delete from client_auth_failures",
      "create table edge_owned (id int)",
    ]) {
      expect(await sqlError(query), query).toBe("42501");
    }
  });

  it("still connects after provisioning revokes CONNECT on the control-plane database from PUBLIC", async () => {
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    try {
      await revokePublicAccess(admin, new URL(db.url ?? "").pathname.slice(1));
    } finally {
      await admin.end();
    }
    // El clon de la plantilla no hereda los permisos de la base: edge-user los concede.
    const name = testRole("edge_acl");
    const password = randomToken(24);
    await ensureEdgeLogin(db.handle.db, name, password);
    const client = clientAs(name, password);
    await client.connect();
    try {
      const { rows } = await client.query("select count(*)::int as n from plans");
      expect(rows[0].n).toBeGreaterThan(0);
    } finally {
      await client.end();
    }
    // Un rol cualquiera ya no entra: la revocación sigue en pie.
    const plain = testRole("plain_acl");
    await db.handle.db.execute(sql.raw(`create role ${plain} login`));
    const outsider = clientAs(plain, "x");
    await expect(outsider.connect()).rejects.toMatchObject({ code: "42501" });
    await outsider.end().catch(() => {});
  });

  it("lets an edge user into its own control-plane database only, not another one on the same server", async () => {
    // Otra base del mismo servidor (p. ej. staging junto a producción), migrada como en un
    // despliegue: farutech_edge es del servidor, pero el CONNECT es de cada usuario en su base.
    const otherName = `farutech_test_${runId}_${process.pid}_other_cp`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    const otherUrl = new URL(adminUrl);
    otherUrl.pathname = `/${otherName}`;
    try {
      await admin.query(`create database "${otherName}" template template0`);
      const other = await createDb({ url: otherUrl.toString() });
      try {
        await other.migrate();
      } finally {
        await other.close();
      }
      // El usuario del edge de la base de la prueba, creado después.
      const name = testRole("edge_isolated");
      const password = randomToken(24);
      await ensureEdgeLogin(db.handle.db, name, password);
      const own = clientAs(name, password);
      await own.connect();
      await own.end();
      const elsewhere = new URL(otherUrl);
      elsewhere.username = name;
      elsewhere.password = password;
      const intruder = new pg.Client({ connectionString: elsewhere.toString() });
      await expect(intruder.connect()).rejects.toMatchObject({ code: "42501" });
      await intruder.end().catch(() => {});
    } finally {
      await admin.query(`drop database if exists "${otherName}" with (force)`);
      await admin.end();
    }
  });
});

describe("edge users of other control planes on the same server", () => {
  /** Base nueva del servidor, migrada como en un despliegue; se borra al final. */
  async function migratedDatabase(suffix: string) {
    const name = `farutech_test_${runId}_${process.pid}_${suffix}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`create database "${name}" template template0`);
    const url = new URL(adminUrl);
    url.pathname = `/${name}`;
    const handle = await createDb({ url: url.toString() });
    await handle.migrate();
    return {
      name,
      handle,
      urlAs(user: string, password: string) {
        const u = new URL(url);
        u.username = user;
        u.password = password;
        return u.toString();
      },
      async drop() {
        await handle.close();
        await admin.query(`drop database if exists "${name}" with (force)`);
        await admin.end();
      },
    };
  }

  it("keeps out of a database migrated later the edge users created for earlier ones", async () => {
    // Primero staging (la base de la prueba) con su usuario del edge; después se migra producción.
    const earlier = testRole("edge_earlier");
    const password = randomToken(24);
    await ensureEdgeLogin(db.handle.db, earlier, password);
    const later = await migratedDatabase("later_cp");
    try {
      const intruder = new pg.Client({ connectionString: later.urlAs(earlier, password) });
      await expect(intruder.connect()).rejects.toMatchObject({ code: "42501" });
      await intruder.end().catch(() => {});
      // Tampoco se le puede adoptar desde la otra base: es de un plano de control.
      await expect(ensureEdgeLogin(later.handle.db, earlier, randomToken(24))).rejects.toThrow(
        /belongs to the control plane/,
      );
    } finally {
      await later.drop();
    }
  });

  it("takes CONNECT from edge users of other databases when this one's is created", async () => {
    const later = await migratedDatabase("cleanup_cp");
    try {
      // Un usuario del edge de antes de marcarlos (sin comentario) que tenía CONNECT aquí.
      const legacy = testRole("edge_legacy");
      await later.handle.db.execute(sql.raw(`create role ${legacy} login in role farutech_edge`));
      await later.handle.db.execute(
        sql.raw(`grant connect on database "${later.name}" to ${legacy}`),
      );
      const own = testRole("edge_own_cp");
      const password = randomToken(24);
      await ensureEdgeLogin(later.handle.db, own, password);
      const mine = new pg.Client({ connectionString: later.urlAs(own, password) });
      await mine.connect();
      await mine.end();
      const stale = new pg.Client({ connectionString: later.urlAs(legacy, "x") });
      await expect(stale.connect()).rejects.toMatchObject({ code: "42501" });
      await stale.end().catch(() => {});
    } finally {
      await later.drop();
    }
  });
});

describe("ensureEdgeLogin", () => {
  it("stores a SCRAM verifier, never the password, and rotates it in place", async () => {
    const name = testRole("edge_rotate");
    const first = randomToken(24);
    expect(await ensureEdgeLogin(db.handle.db, name, first)).toBe("created");
    const stored = await storedRoleVerifier(adminUrl, name);
    expect(stored).toMatch(/^SCRAM-SHA-256\$4096:/);
    expect(stored).not.toContain(first);
    expect(await scramLogin(stored, first)).toBe(true);

    const second = randomToken(24);
    expect(await ensureEdgeLogin(db.handle.db, name, second)).toBe("updated");
    const rotated = await storedRoleVerifier(adminUrl, name);
    expect(await scramLogin(rotated, second)).toBe(true);
    expect(await scramLogin(rotated, first)).toBe(false);
  });

  it("never takes over a role that is not an edge user, and validates name and password", async () => {
    const owner = testRole("not_edge");
    await db.handle.db.execute(sql.raw(`create role ${owner} login password 'untouched-password'`));
    const before = await storedRoleVerifier(adminUrl, owner);
    await expect(ensureEdgeLogin(db.handle.db, owner, randomToken(24))).rejects.toThrow(
      /already exists and is not an edge user/,
    );
    expect(await storedRoleVerifier(adminUrl, owner)).toBe(before);

    const bad: [string, string, RegExp][] = [
      ['edge"; drop table customers; --', randomToken(24), /Invalid edge user name/],
      ["Edge", randomToken(24), /Invalid edge user name/],
      ["farutech_edge", randomToken(24), /Invalid edge user name/],
      [testRole("edge_short"), "short", /at least 24/],
      [testRole("edge_space"), `${"x".repeat(24)} y`, /printable ASCII/],
    ];
    for (const [name, password, message] of bad) {
      await expect(ensureEdgeLogin(db.handle.db, name, password)).rejects.toThrow(message);
    }
    await expect(ensureEdgeLogin(db.handle.db, "x", "y")).rejects.toBeInstanceOf(EdgeLoginError);
    // Una comilla en la contraseña no rompe nada: el SQL lleva el verificador, no la contraseña.
    const quoted = `${randomToken(24)}';drop_table_customers;--`;
    const name = testRole("edge_quote");
    await expect(ensureEdgeLogin(db.handle.db, name, quoted)).resolves.toBe("created");
    expect(await scramLogin(await storedRoleVerifier(adminUrl, name), quoted)).toBe(true);
  });
});

describe("npm run db:edge-user", () => {
  const run = (args: string[], env: NodeJS.ProcessEnv) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, ["--import", "tsx", "db/cli.ts", ...args], {
        env: { ...process.env, LOG_LEVEL: "info", ...env },
      });
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        out += d.toString();
      });
      child.once("exit", (code) => resolve({ code, out }));
    });

  it("creates the user from EDGE_DATABASE_PASSWORD and refuses a missing password or the embedded database", async () => {
    const name = testRole("edge_cli");
    const password = randomToken(24);
    const ok = await run(["edge-user", name], {
      DATABASE_URL: db.url,
      EDGE_DATABASE_PASSWORD: password,
    });
    expect(ok.code, ok.out).toBe(0);
    expect(ok.out).toContain("edge database user ready");
    expect(ok.out).not.toContain(password);
    expect(await scramLogin(await storedRoleVerifier(adminUrl, name), password)).toBe(true);

    const missing = await run(["edge-user", name], {
      DATABASE_URL: db.url,
      EDGE_DATABASE_PASSWORD: "",
    });
    expect(missing.code).toBe(2);
    expect(missing.out).toContain("EDGE_DATABASE_PASSWORD");

    const embedded = await run(["edge-user", name], {
      DATABASE_URL: "",
      FARUTECH_DATA_DIR: "",
      PGLITE_DATA_DIR: "memory://",
      EDGE_DATABASE_PASSWORD: password,
    });
    expect(embedded.code).toBe(1);
    expect(embedded.out).toContain("embedded database");
    expect(embedded.out).not.toMatch(/\n\s+at /);
  });
});
