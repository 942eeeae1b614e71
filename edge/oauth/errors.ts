import type { Context } from "hono";
import type { EdgeEnv } from "../env";

export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unsupported_grant_type"
  | "invalid_scope";

export const noStore = { "cache-control": "no-store", pragma: "no-cache" } as const;

/** Error con la forma de RFC 6749 §5.2 (no problem+json: el RFC manda aquí). */
export class OAuthFailure extends Error {
  override name = "OAuthFailure";
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly status: 400 | 401 | 429,
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

/** Cuerpo application/x-www-form-urlencoded, el único que aceptan /oauth/token y /oauth/revoke. */
export async function readForm(c: Context<EdgeEnv>): Promise<URLSearchParams> {
  const contentType = c.req.header("content-type") ?? "";
  if (!contentType.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
    throw new OAuthFailure(
      "invalid_request",
      "The body must be application/x-www-form-urlencoded",
      400,
    );
  }
  return new URLSearchParams(await c.req.text());
}
