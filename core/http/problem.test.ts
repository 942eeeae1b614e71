import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { describe, expect, it } from "vitest";
import { AppError } from "../errors";
import { PROBLEM_CONTENT_TYPE, problemErrorHandler, problemNotFound } from "./problem";

interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  errors?: { path: string; message: string }[];
  [key: string]: unknown;
}

const INTERNAL_MESSAGE = "secret internal detail at /x/y.ts:12";
const fields = [
  { path: "body.name", message: "Required" },
  { path: "body.email", message: "Invalid email" },
];

function buildApp(): Hono {
  const app = new Hono();
  app.onError(problemErrorHandler());
  app.notFound(problemNotFound());
  app.get("/validation", () => {
    throw new AppError("validation_failed", "The request body is invalid", { fields });
  });
  app.get("/forbidden", () => {
    throw new AppError("forbidden", "You cannot touch this tenant");
  });
  app.get("/unauthorized", () => {
    throw new AppError("unauthorized", "Missing bearer token");
  });
  app.get("/http-400", () => {
    throw new HTTPException(400, { message: "Malformed JSON in request body" });
  });
  app.get("/http-401", () => {
    throw new HTTPException(401, { message: "Bad token" });
  });
  app.get("/boom", () => {
    throw new Error(INTERNAL_MESSAGE);
  });
  app.get("/pg-unique", () => {
    const pgErr = { code: "23505", constraint: "x_uq" };
    throw new Error("q", { cause: pgErr });
  });
  app.get("/pg-datetime-overflow", () => {
    // Lo que Postgres responde a "+010000-01-01T…": un año de cinco cifras.
    const pgErr = { code: "22009", message: 'time zone displacement out of range: "+010000"' };
    throw new Error("q", { cause: pgErr });
  });
  app.get("/pg-fk", () => {
    const pgErr = { code: "23503", constraint: "x_fk" };
    throw new Error("q", { cause: pgErr });
  });
  return app;
}

const app = buildApp();

async function call(path: string): Promise<{ res: Response; text: string; body: ProblemBody }> {
  const res = await app.request(path);
  const text = await res.text();
  return { res, text, body: JSON.parse(text) as ProblemBody };
}

describe("problemErrorHandler", () => {
  it("AppError validation_failed -> 400 con errors por campo", async () => {
    const { res, body } = await call("/validation");
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe(PROBLEM_CONTENT_TYPE);
    expect(PROBLEM_CONTENT_TYPE).toBe("application/problem+json");
    expect(body).toEqual({
      type: "https://docs.farutech.com/problems/validation_failed",
      title: "Validation failed",
      status: 400,
      detail: "The request body is invalid",
      code: "validation_failed",
      instance: "/validation",
      errors: fields,
    });
  });

  it("AppError forbidden -> 403 sin errors ni www-authenticate", async () => {
    const { res, body } = await call("/forbidden");
    expect(res.status).toBe(403);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(res.headers.get("www-authenticate")).toBeNull();
    expect(body.type).toBe("https://docs.farutech.com/problems/forbidden");
    expect(body.title).toBe("Forbidden");
    expect(body.status).toBe(403);
    expect(body.detail).toBe("You cannot touch this tenant");
    expect(body.code).toBe("forbidden");
    expect(body.errors).toBeUndefined();
  });

  it("AppError unauthorized -> 401 con cabecera www-authenticate", async () => {
    const { res, body } = await call("/unauthorized");
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="farutech"');
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(body.code).toBe("unauthorized");
    expect(body.title).toBe("Unauthorized");
    expect(body.detail).toBe("Missing bearer token");
  });

  it("HTTPException(400) -> 400 conservando el mensaje de hono", async () => {
    const { res, body } = await call("/http-400");
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(body.status).toBe(400);
    expect(body.detail).toBe("Malformed JSON in request body");
    expect(body.type).toBe(`https://docs.farutech.com/problems/${body.code}`);
    expect(["bad_request", "validation_failed"]).toContain(body.code);
    expect(body.errors).toBeUndefined();
  });

  it("HTTPException(400) se reporta como bad_request", async () => {
    const { body } = await call("/http-400");
    expect(body.code).toBe("bad_request");
    expect(body.title).toBe("Bad request");
  });

  it("HTTPException(401) -> unauthorized con www-authenticate", async () => {
    const { res, body } = await call("/http-401");
    expect(res.status).toBe(401);
    expect(body.code).toBe("unauthorized");
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="farutech"');
  });

  it("un Error desconocido -> 500 genérico sin filtrar detalles internos", async () => {
    const { res, body, text } = await call("/boom");
    expect(res.status).toBe(500);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(body).toEqual({
      type: "https://docs.farutech.com/problems/internal",
      title: "Internal server error",
      status: 500,
      detail: "An unexpected error occurred",
      code: "internal",
      instance: "/boom",
    });
    expect(text).not.toContain("secret internal detail");
    expect(text).not.toContain("/x/y.ts");
    expect(text).not.toContain("stack");
  });

  it("violación de unicidad de Postgres (23505) en cause -> 409 conflict", async () => {
    const { res, body, text } = await call("/pg-unique");
    expect(res.status).toBe(409);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(body.code).toBe("conflict");
    expect(body.title).toBe("Conflict");
    expect(body.status).toBe(409);
    expect(body.detail).toBe("A resource with the same unique key already exists");
    // El nombre de la restricción es un detalle del esquema: no sale al cliente.
    expect(body.constraint).toBeUndefined();
    expect(text).not.toContain("x_uq");
  });

  it("maps a Postgres date-time out of range (22009) to 400 bad_request, never 500", async () => {
    const { res, body, text } = await call("/pg-datetime-overflow");
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(body.code).toBe("bad_request");
    expect(text).not.toContain("+010000");
  });

  it("violación de clave foránea (23503) -> 422 unprocessable", async () => {
    const { res, body } = await call("/pg-fk");
    expect(res.status).toBe(422);
    expect(body.code).toBe("unprocessable");
    expect(body.title).toBe("Unprocessable content");
    expect(body.type).toBe("https://docs.farutech.com/problems/unprocessable");
    expect(body.constraint).toBeUndefined();
    expect(JSON.stringify(body)).not.toContain("x_fk");
  });
});

describe("problemNotFound", () => {
  it("una ruta desconocida -> 404 problem", async () => {
    const res = await app.request("/does/not/exist", { method: "POST" });
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const body = (await res.json()) as ProblemBody;
    expect(body).toEqual({
      type: "https://docs.farutech.com/problems/not_found",
      title: "Not found",
      status: 404,
      detail: "No route for POST /does/not/exist",
      code: "not_found",
      instance: "/does/not/exist",
    });
  });
});
