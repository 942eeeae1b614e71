import { and, eq } from "drizzle-orm";
import pg from "pg";
import { expect } from "vitest";
import { auditLog } from "../../db/schema";
import type { AdminHarness } from "./admin";
import type { JsonResponse } from "./http";
import { lockWaiters } from "./lock-waiters";

/**
 * Otra conexión cambia `name` sin confirmar; el PATCH de la descripción llega en medio y la
 * conexión confirma después. La auditoría del PATCH debe tener como `before` la fila que reemplazó
 * (la ya editada), no la que leyó antes de esperar. Solo en Postgres: PGlite tiene una conexión.
 */
export async function expectAuditAfterConcurrentEdit(
  h: AdminHarness,
  target: { table: string; path: string; id: string; action: string },
): Promise<void> {
  const editor = new pg.Client({ connectionString: h.db.url });
  await editor.connect();
  let patched: JsonResponse<{ name: string }>;
  try {
    await editor.query("begin");
    await editor.query(
      `update ${target.table} set name = 'Editado por otro', row_version = row_version + 1 where id = $1`,
      [target.id],
    );
    const token = await h.token(["platform_admin"]);
    const patching = h.request<{ name: string }>("PATCH", target.path, {
      token,
      json: { description: "Solo la descripción" },
    });
    expect(await lockWaiters(h.db.url)).toBeGreaterThan(0);
    await editor.query("commit");
    patched = await patching;
  } finally {
    await editor.end();
  }
  expect(patched.status).toBe(200);
  expect(patched.body.name).toBe("Editado por otro");
  const [audit] = await h.db.handle.db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.entityId, target.id), eq(auditLog.action, target.action)));
  const before = audit?.before as { name: string; rowVersion: number };
  const after = audit?.after as { description: string; rowVersion: number };
  expect(before.name).toBe("Editado por otro");
  expect(before.rowVersion).toBe(after.rowVersion - 1);
  expect(after.description).toBe("Solo la descripción");
}
