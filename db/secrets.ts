import { and, asc, eq, gt, isNotNull, not, sql } from "drizzle-orm";
import { type SecretBox, sealedKeyOf, secretContext } from "../core/secret-box";
import { writeAudit } from "./audit";
import { tenantInstances, webhookEndpoints } from "./schema";
import type { Database } from "./types";

/** Columnas cifradas del proyecto, con el contexto (AAD) de cada fila. */
const SEALED = [
  {
    name: "tenant_instances.connection_string",
    table: tenantInstances,
    sealed: tenantInstances.connectionStringEncrypted,
    context: secretContext.connectionString,
    write: (sealed: string, keyId: string) => ({
      connectionStringEncrypted: sealed,
      encryptionKeyId: keyId,
    }),
  },
  {
    name: "webhook_endpoints.secret",
    table: webhookEndpoints,
    sealed: webhookEndpoints.secretEncrypted,
    context: secretContext.webhookSecret,
    write: (sealed: string, keyId: string) => ({ secretEncrypted: sealed, encryptionKeyId: keyId }),
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
        await db
          .update(spec.table)
          .set(spec.write(await box.encrypt(plain, context), box.activeKeyId))
          .where(and(eq(spec.table.id, row.id), eq(spec.sealed, row.sealed)));
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
