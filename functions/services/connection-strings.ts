import { eq } from "drizzle-orm";
import { AppError } from "../../core/errors";
import { errorMessage } from "../../core/http/db-errors";
import { type SecretBox, secretContext } from "../../core/secret-box";
import { tenantInstances } from "../../db/schema";
import { notFound } from "./concurrency";
import { mutate, type ServiceContext } from "./mutation";

export interface TenantConnection {
  tenantInstanceId: string;
  databaseTier: "enterprise";
  connectionString: string;
  encryptionKeyId: string | null;
}

/**
 * La cadena de conexión de la base propia de una instancia Enterprise, para entregarla a su app
 * hija (seed 001: connection strings dinámicas). Es un secreto: cada lectura queda auditada (sin
 * el valor) en la misma transacción que la lee.
 */
export async function readTenantConnection(
  ctx: ServiceContext,
  box: SecretBox | undefined,
  id: string,
): Promise<TenantConnection> {
  return mutate(ctx, async (tx) => {
    const [row] = await tx
      .select({
        tier: tenantInstances.databaseTier,
        status: tenantInstances.status,
        sealed: tenantInstances.connectionStringEncrypted,
        keyId: tenantInstances.encryptionKeyId,
      })
      .from(tenantInstances)
      .where(eq(tenantInstances.id, id));
    if (!row) throw notFound("Tenant instance", id);
    if (row.tier !== "enterprise") {
      throw new AppError(
        "conflict",
        `Tenant instance ${id} is Standard: it has no database of its own; its app uses the product's shared database with app.tenant_id = ${id}`,
        { extra: { databaseTier: row.tier } },
      );
    }
    if (row.status === "decommissioned") {
      throw new AppError(
        "conflict",
        `Tenant instance ${id} is decommissioned; its login is disabled`,
        {
          extra: { currentStatus: row.status },
        },
      );
    }
    if (!row.sealed) {
      throw new AppError(
        "conflict",
        `Tenant instance ${id} has no database yet (status ${row.status}); read it once provisioning succeeds`,
        { extra: { currentStatus: row.status } },
      );
    }
    // Después de las comprobaciones: sin claves, una instancia inexistente sigue siendo un 404.
    if (!box) {
      throw new AppError("unavailable", "Reading connection strings needs ENCRYPTION_KEYS");
    }
    let connectionString: string;
    try {
      connectionString = await box.decrypt(row.sealed, secretContext.connectionString(id));
    } catch (err) {
      // La causa de la caja (clave que falta, v1 rechazado, fila ajena) dice qué arreglar y no
      // lleva el secreto; la de WebCrypto ya la traduce ella.
      throw new AppError(
        "unavailable",
        `The connection string of tenant instance ${id} cannot be decrypted with ENCRYPTION_KEYS (sealed with key ${row.keyId ?? "unknown"}): ${errorMessage(err)}`,
      );
    }
    return {
      result: {
        tenantInstanceId: id,
        databaseTier: "enterprise" as const,
        connectionString,
        encryptionKeyId: row.keyId,
      },
      audit: [
        {
          action: "tenant_instance.connection_string_read",
          entityType: "tenant_instance",
          entityId: id,
          before: null,
          after: { encryptionKeyId: row.keyId },
        },
      ],
    };
  });
}
