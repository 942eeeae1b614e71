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
});
