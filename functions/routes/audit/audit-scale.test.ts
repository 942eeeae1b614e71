import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import { auditLog } from "../../../db/schema";
import { rowsOf } from "../../../db/types";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";

interface Page {
  items: { id: number; occurredAt: string; action: string }[];
  nextCursor: string | null;
}

// La auditoría crece a millones de filas: la lista se ordena por (occurred_at, id) para que un
// índice la sirva también con una ventana de tiempo (por id, Postgres recorría la tabla entera).
describe("audit list at scale (Postgres)", () => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("postgres"));
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const audit = (query: string) => h.request<Page>("GET", `/api/audit${query}`, { token: admin });

  it("pages through entries that share occurred_at (one transaction) without skipping or repeating", async () => {
    const entityId = newId();
    const at = new Date("2025-03-01T10:00:00.000Z");
    const later = new Date("2025-03-01T10:00:01.000Z");
    // Cinco en la misma transacción (mismo instante) y dos después.
    await db()
      .insert(auditLog)
      .values(
        [at, at, at, at, at, later, later].map((occurredAt, i) => ({
          occurredAt,
          actor: "scale",
          action: `thing.n${i}`,
          entityType: "thing",
          entityId,
        })),
      );
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: Page } = await audit(
        `?entityId=${entityId}&limit=2${cursor ? `&cursor=${cursor}` : ""}`,
      );
      expect(page.status).toBe(200);
      seen.push(...page.body.items.map((e) => e.action));
      cursor = page.body.nextCursor;
    } while (cursor);
    // Las más nuevas primero; en el mismo instante, la escrita después primero.
    expect(seen).toEqual(["n6", "n5", "n4", "n3", "n2", "n1", "n0"].map((n) => `thing.${n}`));
  });

  it("answers a time window, with or without an actor, and an action filter from an index instead of a table scan", async () => {
    await db().execute(sql`
      insert into audit_log (occurred_at, actor, action, entity_type, entity_id)
      select timestamptz '2024-01-01' + (g * interval '1 minute'),
             'actor-' || (g % 50), 'bulk.write', 'bulk', gen_random_uuid()::text
      from generate_series(1, 50000) g`);
    await db().execute(sql`analyze audit_log`);
    const plan = async (where: ReturnType<typeof sql>) =>
      rowsOf<{ "QUERY PLAN": string }>(
        await db().execute(sql`
          explain select * from ${auditLog} where ${where}
          order by ${auditLog.occurredAt} desc, ${auditLog.id} desc limit 21`),
      )
        .map((r) => r["QUERY PLAN"])
        .join("\n");
    const window = await plan(
      sql`${auditLog.occurredAt} >= '2024-01-10' and ${auditLog.occurredAt} < '2024-01-20'`,
    );
    expect(window).toContain("audit_occurred_keyset_idx");
    expect(window).not.toContain("Seq Scan");
    const byActor = await plan(
      sql`${auditLog.actor} = 'actor-7' and ${auditLog.occurredAt} >= '2024-01-10' and ${auditLog.occurredAt} < '2024-01-20'`,
    );
    expect(byActor).toContain("audit_actor_keyset_idx");
    // Una acción rara (una baja entre miles de escrituras) no recorre todo el log hacia atrás.
    const byAction = await plan(sql`${auditLog.action} = 'tenant_instance.decommissioned'`);
    expect(byAction).toContain("audit_action_keyset_idx");
    const byCorrelation = await plan(sql`${auditLog.correlationId} = 'c-1'`);
    expect(byCorrelation).toContain("audit_correlation_idx");
    // Y la API responde con esa ventana.
    const res = await audit("?from=2024-01-10T00:00:00Z&to=2024-01-20T00:00:00Z&limit=3");
    expect(res.status).toBe(200);
    expect(res.body.items.map((e) => e.occurredAt)).toEqual([
      "2024-01-19T23:59:00.000Z",
      "2024-01-19T23:58:00.000Z",
      "2024-01-19T23:57:00.000Z",
    ]);
  });

  it("still accepts a cursor issued before the list was ordered by time (id only)", async () => {
    const entityId = newId();
    await db()
      .insert(auditLog)
      .values(
        [1, 2, 3].map((n) => ({
          occurredAt: new Date(`2025-04-0${n}T00:00:00.000Z`),
          actor: "legacy",
          action: `thing.l${n}`,
          entityType: "thing",
          entityId,
        })),
      );
    const first = await audit(`?entityId=${entityId}&limit=1`);
    const newest = first.body.items[0];
    if (!newest) throw new Error("no entry");
    // El cursor de antes: solo el id de la última entrada de la página.
    const legacy = Buffer.from(JSON.stringify({ i: newest.id })).toString("base64url");
    const next = await audit(`?entityId=${entityId}&limit=5&cursor=${legacy}`);
    expect(next.status).toBe(200);
    expect(next.body.items.map((e) => e.action)).toEqual(["thing.l2", "thing.l1"]);
  });
});
