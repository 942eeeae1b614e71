import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type AdminHarness, startSeededAdmin } from "../../../test/support/admin";
import { expectProblem } from "../../../test/support/http";

// Si el mes ya cerró lo dice el reloj de la base, el mismo que mira el BillingWorker: un host de la
// API adelantado no acepta un ciclo que el worker después rechazaría (y mandaría a la DLQ).
describe("billing cycle request and the database clock", () => {
  let h: AdminHarness;

  beforeAll(async () => {
    ({ h } = await startSeededAdmin("postgres"));
  });
  afterAll(async () => h?.stop());
  afterEach(() => {
    vi.useRealTimers();
  });

  it("refuses the month that is open by the database clock even if the API host's clock says it ended", async () => {
    const current = new Date().toISOString().slice(0, 7);
    // El host de la API, 40 días adelantado (el token se firma y se verifica con esa hora).
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 40 * 86_400_000);
    const token = await h.token(["platform_admin"]);
    const res = await h.request("POST", "/api/billing/cycles", {
      token,
      json: { period: current },
    });
    expectProblem(res, 400, "validation_failed");
    expect(JSON.stringify(res.body)).toContain(`${current} can be billed once it has ended`);
  });
});
