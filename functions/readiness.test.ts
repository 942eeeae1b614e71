import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminHarness, startAdminHarness } from "../test/support/admin";

// La API admin sin NATS (el harness no tiene broker): sigue lista, porque sus escrituras dejan los
// eventos en el outbox. Si /readyz fallara, Kubernetes sacaría cada pod del Service justo entonces.
describe("admin readiness without the broker", () => {
  let h: AdminHarness;
  beforeAll(async () => {
    h = await startAdminHarness("postgres");
  });
  afterAll(async () => h?.stop());

  it("stays ready with the database up and reports the broker as failing", async () => {
    const res = await h.request("GET", "/readyz");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ready", checks: { database: "ok", broker: "failing" } });
  });
});
