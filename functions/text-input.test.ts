import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminHarness, startSeededAdmin } from "../test/support/admin";
import { expectProblem } from "../test/support/http";

const NUL = "\u0000";

// Postgres no guarda NUL en text ni en jsonb (22021 / 22P05): debe ser un 400, nunca un 500.
describe.each(["postgres", "pglite"] as const)("text the database cannot store on %s", (kind) => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin(kind));
  });
  afterAll(async () => h?.stop());

  it.each([
    "/api/products/by-code/",
    "/api/plans/by-code/",
    "/api/tenant-instances/by-code/",
    "/api/audit?actor=",
    "/api/dlq?correlationId=",
  ])("GET %s with a NUL is a client error", async (prefix) => {
    const res = await h.request("GET", `${prefix}A${encodeURIComponent(NUL)}B`, { token: admin });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
  });

  it("rejects a NUL in a product name and a customer's legal name with 400", async () => {
    const product = await h.request("POST", "/api/products", {
      token: admin,
      json: { code: "NULTEST", name: `Farutech${NUL}POS` },
    });
    expectProblem(product, 400);
    const customer = await h.request("POST", "/api/customers", {
      token: admin,
      json: {
        legalName: `ACME${NUL} S.A.`,
        taxId: "900123456-1",
        billingEmail: "billing@acme.example",
        country: "CO",
      },
    });
    expectProblem(customer, 400);
    // Nada quedó a medias: el código sigue libre.
    const clean = await h.request("POST", "/api/products", {
      token: admin,
      json: { code: "NULTEST", name: "Farutech POS" },
    });
    expect(clean.status).toBe(201);
  });
});
