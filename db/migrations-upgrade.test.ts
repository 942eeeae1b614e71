import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MIGRATIONS_FOLDER } from "./client";
import { createNodePostgresDb } from "./drivers/node-postgres";
import { createPgliteDb } from "./drivers/pglite";
import { auditLog, dlqEntries } from "./schema";
import type { DbHandle } from "./types";

interface Journal {
  entries: { idx: number; tag: string }[];
}

/** Copia de las migraciones hasta `lastTag` (inclusive): la base "de antes" de una migración. */
function migrationsUpTo(lastTag: string): { folder: string; remove(): void } {
  const folder = mkdtempSync(join(tmpdir(), "farutech-migrations-"));
  cpSync(MIGRATIONS_FOLDER, folder, { recursive: true });
  const path = join(folder, "meta", "_journal.json");
  const journal = JSON.parse(readFileSync(path, "utf8")) as Journal;
  const last = journal.entries.findIndex((e) => e.tag === lastTag);
  if (last < 0) throw new Error(`no migration ${lastTag}`);
  writeFileSync(path, JSON.stringify({ ...journal, entries: journal.entries.slice(0, last + 1) }));
  return { folder, remove: () => rmSync(folder, { recursive: true, force: true }) };
}

/** Una base vacía de cada tipo, migrada con `folder`; la de Postgres se borra al cerrar. */
async function emptyDatabase(
  kind: "postgres" | "pglite",
  folder: string,
  suffix = "upgrade",
): Promise<{ handle: DbHandle; url?: string; name?: string; drop(): Promise<void> }> {
  if (kind === "pglite") {
    const handle = await createPgliteDb({ dataDir: "memory://", migrationsFolder: folder });
    return { handle, drop: () => handle.close() };
  }
  const adminUrl = inject("pgAdminUrl");
  const name = `farutech_test_${inject("runId")}_${process.pid}_${suffix}`;
  const admin = async (statement: string) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    try {
      await c.query(statement);
    } finally {
      await c.end();
    }
  };
  await admin(`create database "${name}" template template0`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const handle = await createNodePostgresDb({ url: url.toString(), migrationsFolder: folder });
  return {
    handle,
    url: url.toString(),
    name,
    drop: async () => {
      await handle.close();
      await admin(`drop database if exists "${name}" with (force)`);
    },
  };
}

// Migraciones de datos sobre filas que existían antes: se aplican hasta la anterior, se insertan
// filas como las dejaba el código de entonces y se aplica el resto.
describe.each(["postgres", "pglite"] as const)(
  "data migrations on an existing %s database",
  (kind) => {
    let old: { folder: string; remove(): void };
    let database: { handle: DbHandle; drop(): Promise<void> };
    const db = () => database.handle.db;

    beforeAll(async () => {
      old = migrationsUpTo("0026_client_auth_pending");
      database = await emptyDatabase(kind, old.folder);
      await database.handle.migrate();
    });
    afterAll(async () => {
      await database?.drop();
      old?.remove();
    });

    it("0027 leaves only the origin of webhook URLs in old audit rows and DLQ errors", async () => {
      const id = crypto.randomUUID();
      const webhookAudit = (before: unknown, after: unknown) => ({
        actor: "ops",
        action: "webhook.updated",
        entityType: "webhook_endpoint",
        entityId: id,
        before,
        after,
      });
      await db()
        .insert(auditLog)
        .values([
          webhookAudit(
            { id, url: "https://hooks.slack.com/services/T0/B0/SECRET1", active: true },
            { id, url: "HTTPS://user:p@ss@VET.Example:8443/?token=SECRET2", urlFingerprint: "ab" },
          ),
          webhookAudit(null, { id, url: "https://vet.example/", active: true }),
          webhookAudit({ id, url: "https://vet.example\\hooks\\SECRET3" }, { id, url: null }),
          {
            actor: "ops",
            action: "customer.updated",
            entityType: "customer",
            entityId: id,
            after: { url: "https://keep.example/path" },
          },
        ]);
      const [entry] = await db()
        .insert(dlqEntries)
        .values({
          domain: "integration",
          stream: "INTEGRATION",
          streamSequence: 1,
          messageKey: "k",
          subject: "integration.tasks.entitlements.changed",
          rawPayload: "{}",
          error:
            `webhook delivery failed for 2 of 2 endpoints: endpoint ${id} (https://hooks.slack.com/services/T0/B0/SECRET4) answered 404 [permanent]; ` +
            `endpoint ${id} (https://vet.example/x) failed: URL includes credentials: https://hookuser:SECRET5@vet.example/p?q=SECRET6 [transient]`,
          errorKind: "permanent",
          deliveries: 1,
        })
        .returning();
      if (!entry) throw new Error("dlq insert returned nothing");

      const { migrate } = await import("drizzle-orm/pglite/migrator");
      const { migrate: migratePg } = await import("drizzle-orm/node-postgres/migrator");
      await (kind === "pglite" ? migrate : migratePg)(db() as never, {
        migrationsFolder: MIGRATIONS_FOLDER,
      });

      const audit = await db().select().from(auditLog).orderBy(auditLog.id);
      expect(audit.map((a) => [a.before, a.after])).toEqual([
        [
          { id, url: "https://hooks.slack.com/…", active: true },
          { id, url: "https://vet.example:8443/…" },
        ],
        [null, { id, url: "https://vet.example/", active: true }],
        [
          { id, url: "https://vet.example/…" },
          { id, url: null },
        ],
        [null, { url: "https://keep.example/path" }],
      ]);
      const [dead] = await db().select().from(dlqEntries).where(eq(dlqEntries.id, entry.id));
      expect(dead?.error).toBe(
        `webhook delivery failed for 2 of 2 endpoints: endpoint ${id} (https://hooks.slack.com/…) answered 404 [permanent]; ` +
          `endpoint ${id} (https://vet.example/…) failed: URL includes credentials: https://vet.example/… [transient]`,
      );
      expect(JSON.stringify({ audit, dead })).not.toMatch(/SECRET|p@ss|hookuser/);
      // Idempotente: aplicada otra vez, nada cambia.
      const again = readFileSync(join(MIGRATIONS_FOLDER, "0027_redact_webhook_urls.sql"), "utf8");
      for (const statement of again.split("--> statement-breakpoint")) {
        await db().execute(sql.raw(statement));
      }
      expect(await db().select().from(auditLog).orderBy(auditLog.id)).toEqual(audit);
      expect((await db().select().from(dlqEntries))[0]?.error).toBe(dead?.error);
    });
  },
);

// 0031 sobre una base en uso: el usuario del edge de antes (sin marca) sigue entrando hasta que
// `db:edge-user` lo marque; el marcado para otra base del servidor deja de entrar.
describe("0031 on a control plane in use", () => {
  it("keeps CONNECT for an unmarked edge user and takes it from one marked for another database", async () => {
    const old = migrationsUpTo("0030_edge_connect_per_login");
    const database = await emptyDatabase("postgres", old.folder, "edge_marks");
    const run = (statement: string) => database.handle.db.execute(sql.raw(statement));
    const role = (suffix: string) => `farutech_test_${suffix}_${inject("runId")}`;
    const legacy = role("edge_unmarked");
    const foreign = role("edge_foreign");
    try {
      await database.handle.migrate();
      for (const login of [legacy, foreign]) {
        await run(`create role ${login} login in role farutech_edge`);
        await run(`grant connect on database "${database.name}" to ${login}`);
      }
      await run(`comment on role ${foreign} is 'farutech edge login of control plane elsewhere'`);
      await run(
        "insert into api_clients (client_id, secret_hash, name, kind, roles) values ('c', 'h', 'c', 'admin', '{platform_admin}')",
      );
      const { migrate } = await import("drizzle-orm/node-postgres/migrator");
      await migrate(database.handle.db as never, { migrationsFolder: MIGRATIONS_FOLDER });

      const connectAs = async (user: string) => {
        const url = new URL(database.url ?? "");
        url.username = user;
        const client = new pg.Client({ connectionString: url.toString() });
        try {
          await client.connect();
          return "connected";
        } catch (err) {
          return (err as { code?: string }).code;
        } finally {
          await client.end().catch(() => {});
        }
      };
      expect(await connectAs(legacy)).toBe("connected");
      expect(await connectAs(foreign)).toBe("42501");
    } finally {
      await database.drop();
      old.remove();
    }
  });
});

// 0032 aconseja crear antes sus índices con CONCURRENTLY; uno cancelado queda INVALID y el
// IF NOT EXISTS lo saltaba: la migración quedaba aplicada con un índice que nadie usa.
describe("0032 after a cancelled CREATE INDEX CONCURRENTLY", () => {
  it("rebuilds an index left invalid instead of skipping it", async () => {
    const old = migrationsUpTo("0031_edge_connect_marked_logins");
    const database = await emptyDatabase("postgres", old.folder, "invalid_index");
    const run = (statement: string) => database.handle.db.execute(sql.raw(statement));
    try {
      await database.handle.migrate();
      // Lo que deja un CONCURRENTLY cancelado: el índice existe, marcado como no válido.
      await run("create index audit_correlation_idx on audit_log (correlation_id)");
      await run(
        "update pg_index set indisvalid = false where indexrelid = 'audit_correlation_idx'::regclass",
      );
      // Uno del mismo nombre en otro esquema (otra app en la misma base) no es asunto nuestro.
      await run("create schema other_app");
      await run("create table other_app.audit_log (correlation_id text)");
      await run("create index audit_correlation_idx on other_app.audit_log (correlation_id)");
      await run(
        "update pg_index set indisvalid = false where indexrelid = 'other_app.audit_correlation_idx'::regclass",
      );
      const { migrate } = await import("drizzle-orm/node-postgres/migrator");
      await migrate(database.handle.db as never, { migrationsFolder: MIGRATIONS_FOLDER });
      const result = await run(`
        select n.nspname, i.indisvalid from pg_index i join pg_class c on c.oid = i.indexrelid
        join pg_namespace n on n.oid = c.relnamespace
        where c.relname = 'audit_correlation_idx' order by n.nspname`);
      expect(
        (result as unknown as { rows: { nspname: string; indisvalid: boolean }[] }).rows,
      ).toEqual([
        { nspname: "other_app", indisvalid: false },
        { nspname: "public", indisvalid: true },
      ]);
    } finally {
      await database.drop();
      old.remove();
    }
  });
});

// Migrar contra una base en uso: una transacción larga sobre una tabla que la migración altera
// la dejaba esperando sin fin, y detrás de ella (cola de bloqueos) cada escritura de esa tabla,
// p. ej. los intentos de login del edge. Con lock_timeout la migración se rinde y lo dice.
describe("migrating while a long transaction holds a table", () => {
  it("gives up after its lock budget with a clear error, and retries short waits within it", async () => {
    const old = migrationsUpTo("0031_edge_connect_marked_logins");
    const database = await emptyDatabase("postgres", old.folder, "lock_timeout");
    const holder = new pg.Client({ connectionString: database.url });
    try {
      await database.handle.migrate();
      old.remove();
      await holder.connect();
      await holder.query("begin");
      // RowExclusive en audit_log hasta el commit: CREATE INDEX (0032) necesita Share.
      await holder.query(
        "insert into audit_log (actor, action, entity_type, entity_id) values ('a', 'b', 'c', 'd')",
      );
      const upgraded = await createNodePostgresDb({
        url: database.url ?? "",
        migrationsFolder: MIGRATIONS_FOLDER,
      });
      try {
        const started = Date.now();
        await expect(upgraded.migrate({ lockTimeoutMs: 300, lockBudgetMs: 2_000 })).rejects.toThrow(
          /gave up waiting for a table lock after 2 attempt\(s\)/,
        );
        expect(Date.now() - started).toBeLessThan(10_000);
        // Cada intento espera poco (lo que espera, esperan detrás las escrituras de esa tabla) y se
        // reintenta dentro del plazo: la transacción que termina entretanto no la hace fallar.
        setTimeout(() => void holder.query("commit"), 800);
        await upgraded.migrate({ lockTimeoutMs: 200, lockBudgetMs: 10_000 });
        const applied = await upgraded.db.execute(
          sql.raw("select count(*)::int as n from drizzle.__drizzle_migrations"),
        );
        // Todas las del repositorio, también las que vengan después de 0032.
        const journal = JSON.parse(
          readFileSync(join(MIGRATIONS_FOLDER, "meta", "_journal.json"), "utf8"),
        ) as Journal;
        expect((applied as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(
          journal.entries.length,
        );
      } finally {
        await upgraded.close();
      }
    } finally {
      await holder.end().catch(() => {});
      await database.drop();
      old.remove();
    }
  });
});
