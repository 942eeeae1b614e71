import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { demoProvisionBody } from "../../../test/support/demo";

// Un host de la API con el reloj adelantado no fecha las instancias con su hora: created_at es el
// de la base, como el de toda otra fila (las listas paginan por él).
describe("provisioning on a host whose clock is off", () => {
  let h: AdminHarness;

  beforeAll(async () => {
    ({ h } = await startSeededAdmin("postgres"));
  });
  afterAll(async () => {
    vi.useRealTimers();
    await h?.stop();
  });

  it("dates the new instance with the database clock", async () => {
    const body = {
      ...(await demoProvisionBody(h.db.handle.db, "host-clock")),
      instanceCode: "host-clock",
    };
    const real = Date.now();
    // Solo Date: los temporizadores siguen reales. El token se firma con la hora del host.
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(real + 3 * 365 * 86_400_000);
    let created: { status: number; body: { tenantInstanceId: string; createdAt: string } };
    try {
      const token = await h.token(["platform_admin"]);
      created = await h.request("POST", "/api/provisioning/provision", { token, json: body });
    } finally {
      vi.useRealTimers();
    }
    expect(created.status).toBe(202);
    expect(Math.abs(Date.parse(created.body.createdAt) - real)).toBeLessThan(60_000);
    const token = await h.token(["platform_admin"]);
    const instance = await h.request<{ createdAt: string }>(
      "GET",
      `/api/tenant-instances/${created.body.tenantInstanceId}`,
      { token },
    );
    expect(instance.body.createdAt).toBe(created.body.createdAt);
  });
});
