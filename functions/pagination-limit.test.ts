import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminHarness, startSeededAdmin } from "../test/support/admin";
import { expectProblem } from "../test/support/http";

// `limit` es un entero en decimal: 0x3, 0b11 o 1e1 no son "3", "3" y "10" para nadie que lea la URL.
describe("pagination limit", () => {
  let h: AdminHarness;
  let admin: string;

  beforeAll(async () => {
    ({ h, admin } = await startSeededAdmin("pglite"));
  });
  afterAll(async () => h?.stop());

  const list = (limit: string) =>
    h.request<{ items: unknown[] }>("GET", `/api/customers?limit=${encodeURIComponent(limit)}`, {
      token: admin,
    });

  it.each([
    "0x3",
    "0b11",
    "0o7",
    "1e1",
    "3.0",
    "3.5",
    "+3",
    "-3",
    " 3",
    "3 ",
    "",
    "Infinity",
    "NaN",
    "0",
    "101",
    "99999999999999999999",
  ])("rejects limit=%j with a 400 naming query.limit", async (limit) => {
    const res = await list(limit);
    expectProblem(res, 400, "validation_failed");
    const { errors } = res.body as unknown as { errors: { path: string }[] };
    expect(new Set(errors.map((e) => e.path))).toEqual(new Set(["query.limit"]));
  });

  it.each([
    ["1", 1],
    ["3", 3],
    ["003", 3],
    ["100", 5],
  ])("accepts limit=%s", async (limit, expected) => {
    const res = await list(limit);
    expect(res.status).toBe(200);
    // La demo tiene 5 clientes.
    expect(res.body.items.length).toBe(expected);
  });

  it("defaults to 20 when absent", async () => {
    const res = await h.request<{ items: unknown[] }>("GET", "/api/customers", { token: admin });
    expect(res.status).toBe(200);
    expect(res.body.items.length).toBe(5);
  });
});
