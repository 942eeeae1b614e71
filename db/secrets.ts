import { and, asc, eq, gt, isNotNull, not, sql } from "drizzle-orm";
import { type SecretBox, sealedKeyOf, secretContext } from "../core/secret-box";
import { writeAudit } from "./audit";
import { tenantInstances, webhookEndpoints } from "./schema";
import type { Database } from "./types";

/**
 * Columnas cifradas del proyecto, con el contexto (AAD) de cada fila. `save` escribe el secreto
 * vuelto a cifrar con compare-and-set: si otro lo cambió entretanto, queda como lo dejó ese otro.
 */
const SEALED = [
  {
    name: "tenant_instances.connection_string",
    table: tenantInstances,
    sealed: tenantInstances.connectionStringEncrypted,
    context: secretContext.connectionString,
    save: (db: Database, id: string, from: string, to: string, keyId: string) =>
      db
        .update(tenantInstances)
        .set({ connectionStringEncrypted: to, encryptionKeyId: keyId })
        .where(
          and(eq(tenantInstances.id, id), eq(tenantInstances.connectionStringEncrypted, from)),
        ),
  },
  {
    // La de una rotación de contraseña en curso (o que murió en la DLQ).
    name: "tenant_instances.pending_connection_string",
    table: tenantInstances,
    sealed: tenantInstances.pendingConnectionStringEncrypted,
    context: secretContext.pendingConnectionString,
    save: (db: Database, id: string, from: string, to: string) =>
      db
        .update(tenantInstances)
        .set({ pendingConnectionStringEncrypted: to })
        .where(
          and(
            eq(tenantInstances.id, id),
            eq(tenantInstances.pendingConnectionStringEncrypted, from),
          ),
        ),
  },
  {
    name: "webhook_endpoints.secret",
    table: webhookEndpoints,
    sealed: webhookEndpoints.secretEncrypted,
    context: secretContext.webhookSecret,
    save: (db: Database, id: string, from: string, to: string, keyId: string) =>
      db
        .update(webhookEndpoints)
        .set({ secretEncrypted: to, encryptionKeyId: keyId })
        .where(and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.secretEncrypted, from))),
  },
  {
    // El anterior de una rotación también ata su clave mientras exista. encryption_key_id es la
    // del secreto actual: esta columna no la cambia.
    name: "webhook_endpoints.previous_secret",
    table: webhookEndpoints,
    sealed: webhookEndpoints.previousSecretEncrypted,
    context: secretContext.previousWebhookSecret,
    save: (db: Database, id: string, from: string, to: string) =>
      db
        .update(webhookEndpoints)
        .set({ previousSecretEncrypted: to })
        .where(
          and(eq(webhookEndpoints.id, id), eq(webhookEndpoints.previousSecretEncrypted, from)),
        ),
  },
] as const;

export interface ResealReport {
  /** Secretos que se volvieron a cifrar con la clave activa (o que se cifrarían, con dryRun). */
  resealed: number;
  /** Cuántos secretos quedan por `<versión>.<kid>`: una clave se retira cuando no aparece aquí. */
  remaining: Record<string, number>;
  /** Secretos que no se pudieron leer (clave ausente, alterados o copiados de otra fila). */
  failed: { column: string; id: string; error: string }[];
}

const BATCH = 200;

/**
 * Vuelve a cifrar con la clave activa (formato v2, ligado a su fila) todo secreto guardado con
 * otra clave o en v1: así una clave vieja o filtrada se puede retirar. Cada fila se escribe con
 * compare-and-set (si otro la cambió entretanto, queda como la dejó ese otro) y por tandas.
 */
export async function resealSecrets(
  db: Database,
  box: SecretBox,
  options: { dryRun: boolean; actor: string },
): Promise<ResealReport> {
  const current = `v2.${box.activeKeyId}.`;
  const report: ResealReport = { resealed: 0, remaining: {}, failed: [] };
  const fromKeys: Record<string, number> = {};
  for (const spec of SEALED) {
    let after = "00000000-0000-0000-0000-000000000000";
    for (;;) {
      const rows = await db
        .select({ id: spec.table.id, sealed: spec.sealed })
        .from(spec.table)
        .where(
          and(
            isNotNull(spec.sealed),
            not(sql`starts_with(${spec.sealed}, ${current})`),
            gt(spec.table.id, after),
          ),
        )
        .orderBy(asc(spec.table.id))
        .limit(BATCH);
      for (const row of rows) {
        after = row.id;
        if (!row.sealed) continue;
        const context = spec.context(row.id);
        let plain: string;
        try {
          plain = await box.decrypt(row.sealed, context);
        } catch (err) {
          report.failed.push({ column: spec.name, id: row.id, error: (err as Error).message });
          continue;
        }
        const key = sealedKeyOf(row.sealed);
        const from = key ? `${key.version}.${key.kid}` : "unknown";
        fromKeys[from] = (fromKeys[from] ?? 0) + 1;
        report.resealed++;
        if (options.dryRun) continue;
        await spec.save(db, row.id, row.sealed, await box.encrypt(plain, context), box.activeKeyId);
      }
      if (rows.length < BATCH) break;
    }
    const counts = await db
      .select({
        key: sql<string>`split_part(${spec.sealed}, '.', 1) || '.' || split_part(${spec.sealed}, '.', 2)`,
        n: sql<number>`count(*)::int`,
      })
      .from(spec.table)
      .where(isNotNull(spec.sealed))
      .groupBy(sql`1`);
    for (const { key, n } of counts) report.remaining[key] = (report.remaining[key] ?? 0) + n;
  }
  if (!options.dryRun && report.resealed > 0) {
    await writeAudit(db, {
      actor: options.actor,
      action: "secrets.resealed",
      entityType: "encryption_key",
      entityId: box.activeKeyId,
      after: { resealed: report.resealed, from: fromKeys, failed: report.failed.length },
      correlationId: null,
    });
  }
  return report;
}
