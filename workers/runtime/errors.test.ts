import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPgliteTestDatabase, type TestDatabase } from "../../test/support/databases";
import { errorMessage, PermanentError } from "./errors";

// Un fallo real de drizzle (PGlite): el texto que va a la tarea, la DLQ y el correo no lleva
// el SQL ni sus parámetros.
describe("errorMessage", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createPgliteTestDatabase();
  });
  afterAll(async () => db?.drop());

  it("keeps the database's error and drops the query and its parameters", async () => {
    const secret = "postgres://tenant_acme:S3cr3t-Pa55@db.internal/acme";
    const failure = await db.handle.db
      .execute(sql`select ${secret}::int as n`)
      .then(() => undefined)
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(Error);
    const text = errorMessage(failure);
    expect(text).toMatch(/^database error: invalid input syntax for type integer/);
    expect(text).toContain("(22P02)");
    expect(text).not.toContain("S3cr3t");
    expect(text).not.toContain("select");
  });

  it("passes other errors through, truncated", () => {
    expect(errorMessage(new PermanentError("bad payload"))).toBe("bad payload");
    expect(errorMessage("x".repeat(2000))).toHaveLength(1000);
  });

  it("scrubs e-mail addresses, even one cut by the length limit", () => {
    expect(errorMessage(new Error("550 rejected juan.perez@patitas.mx"))).toBe(
      "550 rejected <email>",
    );
    // Direcciones largas antes (el texto se acorta al reemplazarlas) y una que cruza el margen.
    const before = Array.from(
      { length: 20 },
      (_, i) => `${"a".repeat(30)}${i}@${"b".repeat(20)}.com`,
    );
    const head = `${before.join(" ")} `;
    const text = `${head}${"f ".repeat((1395 - head.length) / 2)}secret.person@hidden.org tail`;
    const scrubbed = errorMessage(text);
    expect(scrubbed).not.toContain("secret");
    expect(scrubbed).not.toContain("a".repeat(30));
  });

  it("drops the rejected value Postgres repeats, in linear time", () => {
    const failed = (message: string) =>
      Object.assign(new Error("Failed query: select 1"), { cause: new Error(message) });
    expect(errorMessage(failed('invalid input syntax for type uuid: "secret-value"'))).toBe(
      'database error: invalid input syntax for type uuid: "…"',
    );
    // Muchos `: "` sin comilla final: con la regex de antes, segundos de CPU.
    expect(errorMessage(failed(`${'x: "'.repeat(200_000)}x`))).toHaveLength(1000);
  });

  it("handles a megabyte of text without an address (the scrubbing stays linear)", () => {
    // Con el patrón sin cotas esto eran horas de CPU (tiempo cuadrático).
    expect(errorMessage("a".repeat(1_000_000))).toHaveLength(1000);
    expect(errorMessage(`${"a@".repeat(500_000)}`)).toHaveLength(1000);
  });
});
