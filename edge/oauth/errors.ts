import type { Context } from "hono";
import { readCappedText } from "../body";
import type { EdgeEnv } from "../env";

export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unsupported_grant_type"
  | "invalid_scope"
  | "unsupported_token_type";

export const noStore = { "cache-control": "no-store", pragma: "no-cache" } as const;

/** Error con la forma de RFC 6749 §5.2 (no problem+json: el RFC manda aquí). */
export class OAuthFailure extends Error {
  override name = "OAuthFailure";
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly status: 400 | 401 | 413 | 429,
    readonly retryAfterSeconds?: number,
  ) {
    super(description);
  }

  toResponse(): Response {
    const headers: Record<string, string> = { "content-type": "application/json", ...noStore };
    if (this.status === 401)
      headers["www-authenticate"] = 'Basic realm="farutech", charset="UTF-8"';
    if (this.retryAfterSeconds !== undefined)
      headers["retry-after"] = String(this.retryAfterSeconds);
    return new Response(
      JSON.stringify({ error: this.error, error_description: this.description }),
      { status: this.status, headers },
    );
  }
}

/** Envuelve un handler OAuth: sus OAuthFailure salen como JSON de RFC 6749, el resto sigue a onError. */
export function oauthHandler(
  handler: (c: Context<EdgeEnv>) => Promise<Response>,
): (c: Context<EdgeEnv>) => Promise<Response> {
  return async (c) => {
    try {
      return await handler(c);
    } catch (err) {
      if (err instanceof OAuthFailure) return err.toResponse();
      throw err;
    }
  };
}

// Un cuerpo legítimo de /oauth/token o /oauth/revoke ocupa unos cientos de bytes.
export const MAX_FORM_BYTES = 8 * 1024;

const FORM_MEDIA_TYPE = "application/x-www-form-urlencoded";

/**
 * Tipo de medio de un Content-Type (RFC 9110 §8.3.1): lo anterior al primer ";", sin espacios y
 * en minúsculas. Se compara entero: un prefijo dejaba pasar "…urlencodedXYZ".
 */
export function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? "").split(";", 1)[0]?.trim().toLowerCase() ?? "";
}

/** Cuerpo application/x-www-form-urlencoded, el único que aceptan /oauth/token y /oauth/revoke. */
export async function readForm(
  c: Context<EdgeEnv>,
  params: readonly string[],
): Promise<URLSearchParams> {
  if (mediaTypeOf(c.req.header("content-type")) !== FORM_MEDIA_TYPE) {
    throw new OAuthFailure(
      "invalid_request",
      "The body must be application/x-www-form-urlencoded",
      400,
    );
  }
  const text = await readCappedText(c.req.raw, MAX_FORM_BYTES);
  if (text === undefined) {
    throw new OAuthFailure(
      "invalid_request",
      `The body must not exceed ${MAX_FORM_BYTES} bytes`,
      413,
    );
  }
  const form = new URLSearchParams(text);
  // RFC 6749 §3.1 y §3.2, RFC 7009 §2.1: los parámetros que el endpoint lee no pueden repetirse
  // (con dos client_id o dos grant_type, cada capa podría leer uno distinto); los demás se
  // ignoran, también repetidos (RFC 8707 repite `resource`). El nombre del error es el nuestro.
  for (const name of params) {
    if (form.getAll(name).length > 1) {
      throw new OAuthFailure("invalid_request", `Parameter ${name} is repeated`, 400);
    }
  }
  return form;
}
