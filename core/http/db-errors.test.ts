import { DrizzleQueryError } from "drizzle-orm/errors";
import { describe, expect, it } from "vitest";
import { loggableError } from "./db-errors";

describe("loggableError", () => {
  // El mensaje de drizzle lleva la consulta y sus parámetros; un parámetro con un salto de línea y
  // «at » parecía un marco de la pila y salía en el log.
  it("keeps only real stack frames, even when a query parameter looks like one", () => {
    const err = new DrizzleQueryError(
      "insert into customers (email, notes) values ($1, $2)",
      ["ana@example.com", "line one\n    at PERSONAL-DATA (x.ts:1:1)"],
      new Error("duplicate key value violates unique constraint"),
    );
    const logged = loggableError(err);
    expect(String(logged.stack)).not.toContain("PERSONAL-DATA");
    expect(JSON.stringify(logged)).not.toContain("ana@example.com");
    // Y los marcos de verdad siguen ahí: esta prueba es uno.
    expect(String(logged.stack)).toContain("db-errors.test.ts");
  });

  it("keeps the frames of an ordinary error", () => {
    const logged = loggableError(new Error("plain"));
    expect(logged).toMatchObject({ type: "Error", message: "plain" });
    expect(String(logged.stack).split("\n")[0]).toMatch(/^\s+at /);
  });
});
