import { expect } from "vitest";

export interface JsonResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

export async function call<T = Record<string, unknown>>(
  url: string,
  init: {
    method?: string;
    token?: string;
    json?: unknown;
    body?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { ...(init.headers ?? {}) };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  let body = init.body;
  if (init.json !== undefined) {
    headers["content-type"] ??= "application/json";
    body = JSON.stringify(init.json);
  }
  const res = await fetch(url, { method: init.method ?? (body ? "POST" : "GET"), headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // cuerpo no JSON: se devuelve como texto
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

/** Comprueba un error RFC 9457: content-type, campos obligatorios y sin rastros internos. */
export function expectProblem(res: JsonResponse, status: number, code?: string): void {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toContain("application/problem+json");
  const body = res.body as Record<string, unknown>;
  expect(body).toMatchObject({ status, title: expect.any(String), detail: expect.any(String) });
  expect(typeof body.type).toBe("string");
  expect(typeof body.code).toBe("string");
  if (code) expect(body.code).toBe(code);
  expect(JSON.stringify(body)).not.toMatch(/\bat .+\.(ts|js):\d+|stack/);
}
