import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifySecret } from "../core/secret-hash";
import { apiClients, auditLog } from "../db/schema";
import { createPgliteTestDatabase, type TestDatabase } from "../test/support/databases";
import { ensureLocalAdminClient, LOCAL_ADMIN_CLIENT_ID } from "./dev-credentials";

// La credencial de `npm start`: se crea y se reutiliza, pero una revocada no revive (con
// DATABASE_URL, la base puede no ser de desarrollo).
describe("ensureLocalAdminClient", () => {
  let db: TestDatabase;
  let dir: string;
  const urls = { adminUrl: "http://127.0.0.1:3000", edgeUrl: "http://127.0.0.1:8787" };
  const audits = () =>
    db.handle.db.select().from(auditLog).where(eq(auditLog.entityId, LOCAL_ADMIN_CLIENT_ID));
  const row = async () =>
    (
      await db.handle.db
        .select()
        .from(apiClients)
        .where(eq(apiClients.clientId, LOCAL_ADMIN_CLIENT_ID))
    )[0];

  beforeAll(async () => {
    db = await createPgliteTestDatabase();
    dir = mkdtempSync(join(tmpdir(), "farutech-dev-creds-"));
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates the client once, audited, and reuses the saved secret", async () => {
    const path = join(dir, "dev-credentials.json");
    const first = await ensureLocalAdminClient(db.handle.db, path, urls);
    if (!first) throw new Error("expected credentials");
    expect(await verifySecret(first.clientSecret, (await row())?.secretHash ?? "")).toBe(true);
    expect(JSON.parse(readFileSync(path, "utf8")).admin).toEqual(first);
    expect((await audits()).map((a) => [a.actor, a.action])).toEqual([
      ["npm-start", "api_client.created"],
    ]);
    expect(await ensureLocalAdminClient(db.handle.db, path, urls)).toEqual(first);
    expect(await audits()).toHaveLength(1);
    // Sin el archivo, el secreto se cambia (y queda auditado).
    const other = await ensureLocalAdminClient(db.handle.db, join(dir, "other.json"), urls);
    expect(other?.clientSecret).not.toBe(first.clientSecret);
    expect((await audits()).map((a) => a.action)).toEqual([
      "api_client.created",
      "api_client.secret_rotated",
    ]);
  });

  it("never revives a revoked client", async () => {
    const path = join(dir, "revoked.json");
    await db.handle.db
      .update(apiClients)
      .set({ revokedAt: new Date() })
      .where(eq(apiClients.clientId, LOCAL_ADMIN_CLIENT_ID));
    const before = await row();
    const auditCount = (await audits()).length;
    expect(await ensureLocalAdminClient(db.handle.db, path, urls)).toBeUndefined();
    expect(await row()).toEqual(before);
    expect(await audits()).toHaveLength(auditCount);
  });
});
