import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MIGRATIONS_FOLDER } from "./client";
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

// Migraciones de datos sobre filas que existían antes: se aplican hasta la anterior, se insertan
// filas como las dejaba el código de entonces y se aplica el resto.
describe("data migrations on an existing database", () => {
  let old: { folder: string; remove(): void };
  let db: DbHandle;

  beforeAll(async () => {
    old = migrationsUpTo("0026_client_auth_pending");
    db = await createPgliteDb({ dataDir: "memory://", migrationsFolder: old.folder });
    await db.migrate();
  });
  afterAll(async () => {
    await db?.close();
    old?.remove();
  });

  it("0027 leaves only the origin of webhook URLs in old audit rows and DLQ errors", async () => {
    const webhookId = crypto.randomUUID();
    await db.db.insert(auditLog).values([
      {
        actor: "ops",
        action: "webhook.updated",
        entityType: "webhook_endpoint",
        entityId: webhookId,
        before: {
          id: webhookId,
          url: "https://hooks.slack.com/services/T0/B0/SECRET1",
          active: true,
        },
        after: {
          id: webhookId,
          url: "https://user:pw@vet.example:8443/?token=SECRET2",
          active: true,
        },
      },
      {
        actor: "ops",
        action: "webhook.created",
        entityType: "webhook_endpoint",
        entityId: webhookId,
        after: { id: webhookId, url: "https://vet.example/", active: true },
      },
      {
        actor: "ops",
        action: "customer.updated",
        entityType: "customer",
        entityId: webhookId,
        after: { url: "https://keep.example/path" },
      },
    ]);
    const [entry] = await db.db
      .insert(dlqEntries)
      .values({
        domain: "integration",
        stream: "INTEGRATION",
        streamSequence: 1,
        messageKey: "k",
        subject: "integration.tasks.entitlements.changed",
        rawPayload: "{}",
        error: `webhook delivery failed for 1 of 1 endpoints: endpoint ${webhookId} (https://hooks.slack.com/services/T0/B0/SECRET3) answered 404 [permanent]`,
        errorKind: "permanent",
        deliveries: 1,
      })
      .returning();
    if (!entry) throw new Error("dlq insert returned nothing");

    const current = await createPgliteDbOn(db);
    await current.migrate();

    const audit = await db.db.select().from(auditLog).orderBy(auditLog.id);
    expect(audit.map((a) => [a.before, a.after])).toEqual([
      [
        { id: webhookId, url: "https://hooks.slack.com/…", active: true },
        { id: webhookId, url: "https://vet.example:8443/…", active: true },
      ],
      [null, { id: webhookId, url: "https://vet.example/", active: true }],
      [null, { url: "https://keep.example/path" }],
    ]);
    const [dead] = await db.db.select().from(dlqEntries).where(eq(dlqEntries.id, entry.id));
    expect(dead?.error).toBe(
      `webhook delivery failed for 1 of 1 endpoints: endpoint ${webhookId} (https://hooks.slack.com/…) answered 404 [permanent]`,
    );
    expect(JSON.stringify({ audit, dead })).not.toMatch(/SECRET/);
    // Idempotente: aplicada otra vez, nada cambia.
    const again = readFileSync(join(MIGRATIONS_FOLDER, "0027_redact_webhook_urls.sql"), "utf8");
    for (const statement of again.split("--> statement-breakpoint")) {
      await db.db.execute(sql.raw(statement));
    }
    expect(await db.db.select().from(auditLog).orderBy(auditLog.id)).toEqual(audit);
  });
});

/** El mismo cliente con la carpeta de migraciones de verdad. */
async function createPgliteDbOn(handle: DbHandle): Promise<{ migrate(): Promise<void> }> {
  const { migrate } = await import("drizzle-orm/pglite/migrator");
  return {
    migrate: () => migrate(handle.db as never, { migrationsFolder: MIGRATIONS_FOLDER }),
  };
}
