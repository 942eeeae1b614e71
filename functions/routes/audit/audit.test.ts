import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../../core/ids";
import { auditLog } from "../../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";
import { createTestInstance } from "../tenant-instances/test-fixtures";
import { auditEntrySchema } from "./schema";

interface Entry {
  id: number;
  occurredAt: string;
  actor: string;
  action: string;
  entityType: string;
  entityId: string;
  before: unknown;
  after: unknown;
  correlationId: string | null;
}
interface Page {
  items: Entry[];
  nextCursor: string | null;
}

describe.each(["postgres", "pglite"] as const)("audit log on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;
  let support: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
    support = await h.token(["support"]);
  });
  afterAll(async () => h?.stop());

  const db = () => h.db.handle.db;
  const audit = (query: string, token = support) =>
    h.request<Page>("GET", `/api/audit${query}`, { token });

  /** Entradas con fecha fija, escritas directamente: los filtros por fecha no dependen del reloj. */
  async function seedEntries(entityId: string, days: string[]) {
    for (const [i, day] of days.entries()) {
      await db()
        .insert(auditLog)
        .values({
          occurredAt: new Date(`${day}T12:00:00.000Z`),
          actor: "seed-actor",
          action: `thing.step_${i}`,
          entityType: "thing",
          entityId,
          after: { step: i },
        });
    }
  }

  describe("happy path", () => {
    it("lists an entity's changes newest first with actor, before/after and correlation", async () => {
      const inst = await createTestInstance(db());
      const actor = `auditor-${newId().slice(0, 8)}`;
      const token = await h.token(["platform_admin"], actor);
      const correlation = `corr-${newId()}`;
      await h.request("POST", `/api/tenant-instances/${inst.id}/suspend`, {
        token,
        headers: { "x-correlation-id": correlation },
      });
      await h.request("POST", `/api/tenant-instances/${inst.id}/reactivate`, { token });
      await h.request("PATCH", `/api/tenant-instances/${inst.id}`, {
        token: admin,
        json: { environment: "staging" },
      });

      const res = await audit(`?entityType=tenant_instance&entityId=${inst.id}`);
      expect(res.status).toBe(200);
      const items = res.body.items.map((i) => auditEntrySchema.strict().parse(i));
      expect(items.map((i) => [i.action, i.actor])).toEqual([
        ["tenant_instance.updated", "tester-platform_admin"],
        ["tenant_instance.reactivated", actor],
        ["tenant_instance.suspended", actor],
      ]);
      const ids = items.map((i) => i.id);
      expect([...ids].sort((a, b) => b - a)).toEqual(ids);
      expect(items[2]).toMatchObject({
        entityType: "tenant_instance",
        entityId: inst.id,
        before: { status: "active" },
        after: { status: "suspended" },
        correlationId: correlation,
      });
      expect(Number.isNaN(Date.parse(items[2]?.occurredAt ?? ""))).toBe(false);
      expect(res.body.nextCursor).toBeNull();

      const mine = await audit(`?actor=${actor}`);
      expect(mine.body.items.map((i) => i.action)).toEqual([
        "tenant_instance.reactivated",
        "tenant_instance.suspended",
      ]);
      const one = await audit(`?actor=${actor}&action=tenant_instance.suspended`);
      expect(one.body.items.map((i) => i.entityId)).toEqual([inst.id]);
      const traced = await audit(`?correlationId=${correlation}`);
      expect(traced.body.items.map((i) => i.action)).toEqual(["tenant_instance.suspended"]);
    });

    it("filters by time window: from included, to excluded, any UTC offset", async () => {
      const entityId = newId();
      await seedEntries(entityId, ["2020-01-01", "2020-01-02", "2020-01-03"]);
      const window = await audit(
        `?entityId=${entityId}&from=2020-01-02T12:00:00.000Z&to=2020-01-03T12:00:00Z`,
      );
      expect(window.body.items.map((i) => i.action)).toEqual(["thing.step_1"]);
      const sinceOffset = await audit(
        `?entityId=${entityId}&from=${encodeURIComponent("2020-01-02T07:00:00-05:00")}`,
      );
      expect(sinceOffset.body.items.map((i) => i.action)).toEqual(["thing.step_2", "thing.step_1"]);
      const until = await audit(`?entityId=${entityId}&to=2020-01-02T00:00:00Z`);
      expect(until.body.items.map((i) => i.action)).toEqual(["thing.step_0"]);
    });

    it("pages newest first with a cursor, never repeating or skipping entries", async () => {
      const entityId = newId();
      await seedEntries(entityId, [
        "2021-05-01",
        "2021-05-02",
        "2021-05-03",
        "2021-05-04",
        "2021-05-05",
      ]);
      const seen: Entry[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res: { body: Page } = await audit(
          `?entityId=${entityId}&limit=2${cursor ? `&cursor=${cursor}` : ""}`,
        );
        seen.push(...res.body.items);
        cursor = res.body.nextCursor;
        pages++;
      } while (cursor && pages < 10);
      expect(pages).toBe(3);
      expect(seen.map((i) => i.action)).toEqual([
        "thing.step_4",
        "thing.step_3",
        "thing.step_2",
        "thing.step_1",
        "thing.step_0",
      ]);
      // Una entrada nueva no desplaza las páginas siguientes de un recorrido ya empezado.
      const first = await audit(`?entityId=${entityId}&limit=2`);
      await seedEntries(entityId, ["2021-05-06"]);
      const second = await audit(`?entityId=${entityId}&limit=2&cursor=${first.body.nextCursor}`);
      expect(second.body.items.map((i) => i.action)).toEqual(["thing.step_2", "thing.step_1"]);
    });
  });

  describe("errors", () => {
    it("rejects bad cursors, dates and limits with 400", async () => {
      for (const query of [
        "?cursor=%%%",
        `?cursor=${Buffer.from(JSON.stringify({ i: -3 })).toString("base64url")}`,
        `?cursor=${Buffer.from(JSON.stringify({ o: "0000-01-01T00:00:00Z", i: 3 })).toString("base64url")}`,
        "?from=yesterday",
        "?to=2020-13-01T00:00:00Z",
        "?from=2020-02-01T00:00:00Z&to=2020-01-01T00:00:00Z",
        "?limit=1000",
        "?limit=0",
      ]) {
        expectProblem(await audit(query), 400, "validation_failed");
      }
      const reversed = await audit("?from=2020-02-01T00:00:00Z&to=2020-01-01T00:00:00Z");
      expect((reversed.body as unknown as { errors: { path: string }[] }).errors[0]?.path).toBe(
        "query.from",
      );
    });
    it("rejects from and to outside years 1970-9999 in UTC with 400 naming the field, never a 500", async () => {
      for (const [field, value] of [
        ["from", "9999-12-31T23:59:59-14:00"],
        ["to", "9999-12-31T23:59:59-14:00"],
        ["from", "9999-12-31T23:59:59-00:01"],
        ["to", "0000-01-01T00:00:00Z"],
        ["from", "0049-06-01T00:00:00Z"],
      ] as const) {
        const res = await audit(`?${field}=${encodeURIComponent(value)}`);
        expectProblem(res, 400, "validation_failed");
        expect(
          (res.body as unknown as { errors: { path: string }[] }).errors.map((e) => e.path),
          value,
        ).toEqual([`query.${field}`]);
      }
      // Los bordes valen: nada queda fuera de [1970, 10000).
      const all = await audit(
        `?from=1970-01-01T00:00:00Z&to=${encodeURIComponent("9999-12-31T23:59:59+14:00")}`,
      );
      expect(all.status).toBe(200);
      expect(all.body.items.length).toBeGreaterThan(0);
    });
  });

  describe("security", () => {
    it("requires a token and a tenant-reading role", async () => {
      expectProblem(await h.request("GET", "/api/audit"), 401, "unauthorized");
      expectProblem(await audit("", await h.token(["catalog_manager"])), 403, "forbidden");
      expectProblem(await audit("", await h.token(["tenant_app"])), 403, "forbidden");
      expect((await audit("", support)).status).toBe(200);
      expect((await audit("", admin)).status).toBe(200);
    });
  });
});
