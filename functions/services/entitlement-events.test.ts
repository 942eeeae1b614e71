import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { outboxEvents, plans } from "../../db/schema";
import { type AdminHarness, startSeededAdmin } from "../../test/support/admin";
import { createTestInstance } from "../routes/tenant-instances/test-fixtures";

// Quién recibe entitlements.changed: solo instancias vivas, y nada cambia en una dada de baja.
describe.each(["postgres", "pglite"] as const)("entitlement events (%s)", (database) => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(database));
  });
  afterAll(async () => h?.stop());

  const changedEventsFor = (instanceId: string) =>
    h.db.handle.db
      .select({ id: outboxEvents.id })
      .from(outboxEvents)
      .where(
        and(
          eq(outboxEvents.type, "entitlements.changed"),
          sql`${outboxEvents.payload}->'data'->>'tenantInstanceId' = ${instanceId}`,
        ),
      );

  it("a plan change notifies the plan's live instances, not its decommissioned ones", async () => {
    const live = await createTestInstance(h.db.handle.db, { planCode: "VET_PROFESSIONAL" });
    const dead = await createTestInstance(h.db.handle.db, {
      planCode: "VET_PROFESSIONAL",
      status: "decommissioned",
      subscriptionStatus: "cancelled",
    });
    const [plan] = await h.db.handle.db
      .select()
      .from(plans)
      .where(eq(plans.code, "VET_PROFESSIONAL"));
    if (!plan) throw new Error("demo plan missing");
    const res = await h.request("PATCH", `/api/plans/${plan.id}`, {
      token: admin,
      json: { maxUsers: plan.maxUsers + 7 },
    });
    expect(res.status).toBe(200);
    expect(await changedEventsFor(live.id)).toHaveLength(1);
    expect(await changedEventsFor(dead.id)).toHaveLength(0);
  });

  it("refuses to change overrides or the subscription of a decommissioned instance (409), like PUT features", async () => {
    const dead = await createTestInstance(h.db.handle.db, {
      status: "decommissioned",
      subscriptionStatus: "cancelled",
    });
    const put = await h.request("PUT", `/api/provisioning/${dead.id}/features`, {
      token: admin,
      json: { max_users: 99 },
    });
    expect(put.status).toBe(409);
    const post = await h.request("POST", `/api/subscriptions/${dead.subscriptionId}/overrides`, {
      token: admin,
      json: { limitName: "max_users", value: 99 },
    });
    expect(post.status).toBe(409);
    expect(post.headers.get("content-type")).toContain("application/problem+json");
    expect(post.body).toMatchObject({ currentStatus: "decommissioned" });
    const patch = await h.request("PATCH", `/api/subscriptions/${dead.subscriptionId}`, {
      token: admin,
      json: { status: "active" },
    });
    expect(patch.status).toBe(409);
    expect(await changedEventsFor(dead.id)).toHaveLength(0);
  });
});
