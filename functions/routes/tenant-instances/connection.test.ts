import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../../core/logger";
import {
  createSecretBox,
  generateEncryptionKey,
  type SecretBox,
  secretContext,
} from "../../../core/secret-box";
import { auditLog, tenantInstances } from "../../../db/schema";
import { type AdminHarness, offlineBus, startSeededAdmin } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";
import { readTenantConnection } from "../../services/connection-strings";

// La app hija de una instancia Enterprise necesita la cadena de su base (seed 001: connection
// strings dinámicas); el operador la lee aquí, descifrada, solo con platform_admin y auditada.
describe.each(["postgres", "pglite"] as const)("tenant instance connection on %s", (kind) => {
  let h: AdminHarness;
  let box: SecretBox;
  let admin: string;
  let support: string;
  let ids: string[];

  beforeAll(async () => {
    box = await createSecretBox(JSON.stringify([generateEncryptionKey("conn-test")]));
    ({ h, admin } = await startSeededAdmin(kind, undefined, { secretBox: box }));
    support = await h.token(["support"]);
    ids = (
      await h.db.handle.db
        .select({ id: tenantInstances.id })
        .from(tenantInstances)
        .orderBy(tenantInstances.id)
        .limit(4)
    ).map((r) => r.id);
  });
  afterAll(async () => h?.stop());

  type Status = (typeof tenantInstances.$inferSelect)["status"];
  const makeEnterprise = async (id: string, sealed: string | null, status: Status = "active") =>
    h.db.handle.db
      .update(tenantInstances)
      .set({
        databaseTier: "enterprise",
        status,
        connectionStringEncrypted: sealed,
        encryptionKeyId: sealed ? box.activeKeyId : null,
      })
      .where(eq(tenantInstances.id, id));
  const read = (id: string, token?: string) =>
    h.request<{ connectionString: string; encryptionKeyId: string }>(
      "GET",
      `/api/tenant-instances/${id}/connection`,
      token ? { token } : {},
    );

  it("gives platform_admin the decrypted string, uncached, and audits the read without it", async () => {
    const [id = ""] = ids;
    const plain = `postgres://t_${id.replaceAll("-", "_")}:s3cr3t-pw@db.test:5432/t_x`;
    await makeEnterprise(id, await box.encrypt(plain, secretContext.connectionString(id)));
    const res = await read(id, admin);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      tenantInstanceId: id,
      databaseTier: "enterprise",
      connectionString: plain,
      encryptionKeyId: "conn-test",
    });
    expect(res.headers.get("cache-control")).toBe("no-store");
    const audits = await h.db.handle.db
      .select()
      .from(auditLog)
      .where(eq(auditLog.action, "tenant_instance.connection_string_read"));
    expect(audits.map((a) => a.entityId)).toEqual([id]);
    expect(audits[0]?.actor).toBe("tester-platform_admin");
    expect(JSON.stringify(audits)).not.toContain("s3cr3t-pw");
    expect(JSON.stringify(h.logs)).not.toContain("s3cr3t-pw");
    // Un secreto: support (que lee instancias) no, ni sin token.
    expectProblem(await read(id, support), 403);
    expectProblem(await read(id), 401);
  });

  it("answers 409 for a Standard instance, one without a database yet, or one decommissioned", async () => {
    const [, standard = "", pending = "", gone = ""] = ids;
    const std = await read(standard, admin);
    expectProblem(std, 409, "conflict");
    expect(JSON.stringify(std.body)).toContain("shared database");
    await makeEnterprise(pending, null, "provisioning");
    expectProblem(await read(pending, admin), 409, "conflict");
    await makeEnterprise(
      gone,
      await box.encrypt("postgres://x", secretContext.connectionString(gone)),
      "decommissioned",
    );
    expectProblem(await read(gone, admin), 409, "conflict");
    expectProblem(await read(crypto.randomUUID(), admin), 404, "not_found");
  });

  it("refuses (503) a string sealed for another row, and reading without ENCRYPTION_KEYS", async () => {
    const [first = "", , , other = ""] = ids;
    // Copiada de otra fila: los datos asociados no coinciden y no descifra.
    const copied = await box.encrypt("postgres://stolen", secretContext.connectionString(first));
    await makeEnterprise(other, copied);
    const res = await read(other, admin);
    expectProblem(res, 503, "unavailable");
    expect(JSON.stringify(res.body)).not.toContain("stolen");
    await expect(
      readTenantConnection(
        {
          db: h.db.handle.db,
          bus: offlineBus,
          logger: silentLogger,
          actor: "t",
          correlationId: "c",
          baseDomain: "farutech.test",
        },
        undefined,
        first,
      ),
    ).rejects.toMatchObject({ code: "unavailable" });
  });

  // El operador debe saber qué arreglar: la clave que falta en ENCRYPTION_KEYS (a medio rotar) o el
  // formato v1 rechazado (correr secrets:reseal). Antes solo oía «no se puede descifrar».
  it("says why a string cannot be read: a key missing from ENCRYPTION_KEYS", async () => {
    const [, , third = ""] = ids;
    const elsewhere = await createSecretBox(JSON.stringify([generateEncryptionKey("retired")]));
    const sealed = await elsewhere.encrypt("postgres://x", secretContext.connectionString(third));
    await makeEnterprise(third, sealed);
    const res = await read(third, admin);
    expectProblem(res, 503, "unavailable");
    expect((res.body as unknown as { detail: string }).detail).toContain("no key with id retired");
  });
});
