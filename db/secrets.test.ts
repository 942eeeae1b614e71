import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../core/ids";
import { createSecretBox, generateEncryptionKey, secretContext } from "../core/secret-box";
import { createTestDatabase, type TestDatabase } from "../test/support/databases";
import { auditLog, tenantInstances, webhookEndpoints } from "./schema";
import { resealSecrets } from "./secrets";
import { seedDemo } from "./seed";

// Rotar ENCRYPTION_KEYS hasta poder retirar la clave vieja: todo lo cifrado con ella pasa a la nueva.
describe.each(["postgres", "pglite"] as const)("resealing secrets on %s", (kind) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase(kind);
    await seedDemo(db.handle.db);
  });
  afterAll(async () => db?.drop());

  it("reseals every secret of the old key with the active one, bound to its row, and reports what is left", async () => {
    const old = generateEncryptionKey("k2025");
    const fresh = generateEncryptionKey("k2026");
    const before = await createSecretBox(JSON.stringify([old]));
    const instances = await db.handle.db
      .select({ id: tenantInstances.id })
      .from(tenantInstances)
      .limit(3);
    const [first, second, swapped] = instances;
    if (!first || !second || !swapped) throw new Error("demo data missing");
    const seal = (id: string, plain: string) =>
      before.encrypt(plain, secretContext.connectionString(id));
    for (const { id } of [first, second]) {
      await db.handle.db
        .update(tenantInstances)
        .set({
          databaseTier: "enterprise",
          connectionStringEncrypted: await seal(id, `postgres://t:${id}@db/x`),
          encryptionKeyId: "k2025",
        })
        .where(eq(tenantInstances.id, id));
    }
    // Copiado de otra fila: no descifra aquí, se informa y no se toca.
    const foreign = await seal(first.id, "postgres://t:stolen@db/x");
    await db.handle.db
      .update(tenantInstances)
      .set({
        databaseTier: "enterprise",
        connectionStringEncrypted: foreign,
        encryptionKeyId: "k2025",
      })
      .where(eq(tenantInstances.id, swapped.id));
    const webhookId = newId();
    await db.handle.db.insert(webhookEndpoints).values({
      id: webhookId,
      tenantInstanceId: first.id,
      url: "https://hooks.example/x",
      secretEncrypted: await before.encrypt("whsec_1", secretContext.webhookSecret(webhookId)),
      encryptionKeyId: "k2025",
      // Rotación en curso: el anterior también ata la clave vieja.
      previousSecretEncrypted: await before.encrypt(
        "whsec_0",
        secretContext.previousWebhookSecret(webhookId),
      ),
      previousSecretExpiresAt: new Date(Date.now() + 3_600_000),
    });

    const box = await createSecretBox(JSON.stringify([fresh, old]));
    const check = await resealSecrets(db.handle.db, box, { dryRun: true, actor: "test" });
    expect(check).toMatchObject({ resealed: 4, remaining: { "v2.k2025": 5 } });
    expect(check.failed).toHaveLength(1);

    const report = await resealSecrets(db.handle.db, box, { dryRun: false, actor: "test" });
    expect(report.resealed).toBe(4);
    expect(report.remaining).toEqual({ "v2.k2026": 4, "v2.k2025": 1 });
    expect(report.failed).toEqual([
      {
        column: "tenant_instances.connection_string",
        id: swapped.id,
        error: expect.stringContaining("belongs to another record"),
      },
    ]);
    // Ya sin la clave vieja, todo lo resellado se lee.
    const only = await createSecretBox(JSON.stringify([fresh]));
    for (const { id } of [first, second]) {
      const [row] = await db.handle.db
        .select()
        .from(tenantInstances)
        .where(eq(tenantInstances.id, id));
      expect(row?.encryptionKeyId).toBe("k2026");
      expect(
        await only.decrypt(
          row?.connectionStringEncrypted ?? "",
          secretContext.connectionString(id),
        ),
      ).toBe(`postgres://t:${id}@db/x`);
    }
    const [hook] = await db.handle.db
      .select()
      .from(webhookEndpoints)
      .where(eq(webhookEndpoints.id, webhookId));
    expect(
      await only.decrypt(hook?.secretEncrypted ?? "", secretContext.webhookSecret(webhookId)),
    ).toBe("whsec_1");
    expect(
      await only.decrypt(
        hook?.previousSecretEncrypted ?? "",
        secretContext.previousWebhookSecret(webhookId),
      ),
    ).toBe("whsec_0");
    expect(hook?.encryptionKeyId).toBe("k2026");
    const audit = await db.handle.db
      .select()
      .from(auditLog)
      .where(eq(auditLog.action, "secrets.resealed"));
    expect(audit.map((a) => a.after)).toEqual([
      { resealed: 4, from: { "v2.k2025": 4 }, failed: 1 },
    ]);
    // Una segunda pasada no tiene nada que hacer.
    expect(
      (await resealSecrets(db.handle.db, box, { dryRun: false, actor: "test" })).resealed,
    ).toBe(0);
  });
});
